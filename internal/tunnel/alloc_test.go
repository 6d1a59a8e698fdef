package tunnel_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/bpm-project/bpm/internal/tunnel"
)

func TestAllocatorStableAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	store := &tunnel.MemStore{}
	p := netip.MustParsePrefix(tunnel.DefaultCIDR)
	a, err := tunnel.NewAllocator(p, store)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hub() != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("hub = %s", a.Hub())
	}
	aws, _ := a.Allocate(ctx, "aws")
	home, _ := a.Allocate(ctx, "home")
	if aws.String() != "10.77.0.2" || home.String() != "10.77.0.3" {
		t.Errorf("aws=%s home=%s", aws, home)
	}
	// A new allocator over the same store (a manager restart) returns the
	// same addresses and does not reuse them.
	b, _ := tunnel.NewAllocator(p, store)
	if got, _ := b.Allocate(ctx, "home"); got != home {
		t.Errorf("after restart home = %s, want %s", got, home)
	}
	if got, _ := b.Allocate(ctx, "gcp"); got.String() != "10.77.0.4" {
		t.Errorf("gcp = %s", got)
	}
	if err := b.Release(ctx, "aws"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Lookup(ctx, "aws"); ok {
		t.Error("aws still allocated after release")
	}
	if err := b.Release(ctx, "aws"); err != nil {
		t.Errorf("second release: %v", err)
	}
}

func TestAllocatorExhaustion(t *testing.T) {
	ctx := context.Background()
	a, err := tunnel.NewAllocator(netip.MustParsePrefix("10.9.0.0/30"), &tunnel.MemStore{})
	if err != nil {
		t.Fatal(err)
	}
	// /30: .0 network, .1 hub, .2 one remote, .3 broadcast.
	if got, err := a.Allocate(ctx, "a"); err != nil || got.String() != "10.9.0.2" {
		t.Fatalf("a = %s, %v", got, err)
	}
	if _, err := a.Allocate(ctx, "b"); err == nil {
		t.Error("allocated beyond the prefix")
	}
	if _, err := tunnel.NewAllocator(netip.MustParsePrefix("10.9.0.0/31"), &tunnel.MemStore{}); err == nil {
		t.Error("accepted a /31")
	}
}
