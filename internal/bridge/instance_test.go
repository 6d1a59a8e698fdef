package bridge

import (
	"context"
	"os"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/bpm-project/bpm/internal/registry"
)

// TestFirstRegistrationTakesOwnInstanceRecord: a bridge that knows its
// instance treats a record stamped with that instance (the manager's
// fallback route, or its own registration before a manager restart) as its
// own, while another instance's record still answers ALREADY_EXISTS.
func TestFirstRegistrationTakesOwnInstanceRecord(t *testing.T) {
	ctx := context.Background()
	reg, _ := registry.Open(ctx, registry.NewMemStore(), nil)
	if err := reg.Create(ctx, &registry.Record{ServiceID: 7, UpstreamURL: "http://127.0.0.1:1", InstanceID: "bp-mine"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Create(ctx, &registry.Record{ServiceID: 8, UpstreamURL: "http://127.0.0.1:2", InstanceID: "bp-other"}); err != nil {
		t.Fatal(err)
	}

	mine := newHarness(t, reg, Config{InstanceID: "bp-mine"})
	if _, err := mine.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:3")); err != nil {
		t.Fatalf("register over the own instance's record: %v", err)
	}
	if p, ok := mine.srv.Pinned(); !ok || p != 7 {
		t.Fatalf("pin = %d, %v", p, ok)
	}
	rec, _ := reg.Get(registry.ID{Main: 7})
	if rec.UpstreamURL != "http://127.0.0.1:3" || !rec.ViaBridge || len(rec.Owners) != 1 || rec.InstanceID != "bp-mine" {
		t.Fatalf("record = %+v", rec)
	}

	other := newHarness(t, reg, Config{InstanceID: "bp-mine-too"})
	_, err := other.client.RegisterBlueprintServiceProxy(ctx, regReq(8, "http://127.0.0.1:4"))
	wantCode(t, err, codes.AlreadyExists, "Service 8:0 is already registered by another bridge")
	if rec, _ := reg.Get(registry.ID{Main: 8}); rec.UpstreamURL != "http://127.0.0.1:2" || rec.ViaBridge {
		t.Fatalf("another instance's record changed: %+v", rec)
	}
}

// TestDetachKeepsRecord: a detached bridge (the manager stopping while the
// instance runs on) removes its socket but leaves the pinned record, and a
// new bridge of the same instance registers over it.
func TestDetachKeepsRecord(t *testing.T) {
	ctx := context.Background()
	reg, _ := registry.Open(ctx, registry.NewMemStore(), nil)
	h := newHarness(t, reg, Config{InstanceID: "bp-1"})
	if _, err := h.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	h.srv.Detach()
	h.stop(t)
	h.done = make(chan error, 1)
	h.done <- nil
	if _, err := os.Lstat(h.path); !os.IsNotExist(err) {
		t.Fatalf("socket after detached shutdown: %v", err)
	}
	if _, err := reg.Get(registry.ID{Main: 7}); err != nil {
		t.Fatalf("record after detached shutdown: %v", err)
	}
	again := newHarness(t, reg, Config{InstanceID: "bp-1"})
	if _, err := again.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:2")); err != nil {
		t.Fatalf("re-register after restart: %v", err)
	}
}
