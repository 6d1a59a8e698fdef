package gateway_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestSetPeersDeclarative adds, updates and removes peers by handing the hub
// the complete desired set each time, and checks each change on the wire.
func TestSetPeersDeclarative(t *testing.T) {
	hub := startHub(t, mustKey(t), ":0", nil)
	k1, k2 := mustKey(t), mustKey(t)
	a1, a2 := netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	if err := hub.SetPeers([]tunnel.Peer{{Name: "one", PublicKey: k1.Public(), Address: a1}}); err != nil {
		t.Fatal(err)
	}
	startGateway(t, gatewayConfig(hub, k1, a1))
	inst := instance(t, "ok")
	eventually(t, 10*time.Second, "peer one reachable", func() error { _, err := get(client(hub, "one"), "http://"+inst); return err })

	// Add: peer two joins; peer one's session must survive untouched.
	before, _ := hub.PeerStats()
	if err := hub.SetPeers([]tunnel.Peer{
		{Name: "one", PublicKey: k1.Public(), Address: a1},
		{Name: "two", PublicKey: k2.Public(), Address: a2},
	}); err != nil {
		t.Fatal(err)
	}
	g2 := startGateway(t, gatewayConfig(hub, k2, a2))
	eventually(t, 10*time.Second, "peer two reachable", func() error { _, err := get(client(hub, "two"), "http://"+inst); return err })
	after, _ := hub.PeerStats()
	if !after[0].LastHandshake.Equal(before[0].LastHandshake) {
		t.Errorf("adding a peer re-handshook peer one (%v -> %v): the device was reset", before[0].LastHandshake, after[0].LastHandshake)
	}

	// Update: peer two moves to a new tunnel address; its gateway follows.
	a3 := netip.MustParseAddr("10.77.0.9")
	if err := hub.SetPeers([]tunnel.Peer{
		{Name: "one", PublicKey: k1.Public(), Address: a1},
		{Name: "two", PublicKey: k2.Public(), Address: a3, Keepalive: 10 * time.Second},
	}); err != nil {
		t.Fatal(err)
	}
	ps, _ := hub.PeerStats()
	if len(ps) != 2 || ps[1].Name != "two" || ps[1].AllowedIPs[0] != netip.PrefixFrom(a3, 32) || ps[1].Keepalive != 10*time.Second {
		t.Fatalf("after update: %+v", ps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	g2.Close(ctx)
	cancel()
	startGateway(t, gatewayConfig(hub, k2, a3))
	eventually(t, 10*time.Second, "peer two reachable at its new address", func() error { _, err := get(client(hub, "two"), "http://"+inst); return err })

	// Remove: peer one disappears from the device and is no longer reachable,
	// while peer two keeps working.
	if err := hub.SetPeers([]tunnel.Peer{{Name: "two", PublicKey: k2.Public(), Address: a3, Keepalive: 10 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	ps, _ = hub.PeerStats()
	if len(ps) != 1 || ps[0].Name != "two" {
		t.Fatalf("after remove: %+v", ps)
	}
	if _, err := get(client(hub, "one"), "http://"+inst); err == nil {
		t.Error("removed peer still reachable by name")
	}
	// Even dialling its tunnel address directly gets nowhere now.
	dctx, dcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer dcancel()
	if c, err := hub.DialTunnel(dctx, "tcp", netip.AddrPortFrom(a1, tunnel.ControlPort).String()); err == nil {
		c.Close()
		t.Error("removed peer's tunnel address still reachable")
	}
	if _, err := get(client(hub, "two"), "http://"+inst); err != nil {
		t.Errorf("peer two after removing one: %v", err)
	}
	// Setting the same set again changes nothing.
	if err := hub.SetPeers([]tunnel.Peer{{Name: "two", PublicKey: k2.Public(), Address: a3, Keepalive: 10 * time.Second}}); err != nil {
		t.Fatal(err)
	}
}

func TestSetPeersRejectsBadSets(t *testing.T) {
	hub := startHub(t, mustKey(t), ":0", nil)
	k := mustKey(t).Public()
	for name, ps := range map[string][]tunnel.Peer{
		"duplicate name":    {{Name: "a", PublicKey: k, Address: gwAddr}, {Name: "a", PublicKey: mustKey(t).Public(), Address: netip.MustParseAddr("10.77.0.3")}},
		"duplicate key":     {{Name: "a", PublicKey: k, Address: gwAddr}, {Name: "b", PublicKey: k, Address: netip.MustParseAddr("10.77.0.3")}},
		"duplicate address": {{Name: "a", PublicKey: k, Address: gwAddr}, {Name: "b", PublicKey: mustKey(t).Public(), Address: gwAddr}},
		"hub address":       {{Name: "a", PublicKey: k, Address: hubAddr}},
		"no key":            {{Name: "a", Address: gwAddr}},
	} {
		if err := hub.SetPeers(ps); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if ps, _ := hub.PeerStats(); len(ps) != 0 {
		t.Errorf("rejected sets left peers behind: %+v", ps)
	}
}
