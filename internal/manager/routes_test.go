package manager_test

import (
	"testing"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/registry"
)

// TestRouteFollowsLocalInstance: a local instance with a port gets a
// tcp-local route at deploy that status shows and a restart keeps, and
// terminate removes it.
func TestRouteFollowsLocalInstance(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, port := f.writePackage("http")
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := waitState(t, f.client, inst.ID, "running")
	want := api.Route{Service: "1:0", Transport: "tcp-local", Upstream: "http://127.0.0.1:" + itoa(port)}
	if d.Route == nil || *d.Route != want {
		t.Fatalf("route = %+v, want %+v", d.Route, want)
	}
	if rec, err := f.m.Registry().Get(idOf(1)); err != nil || rec.InstanceID != inst.ID {
		t.Fatalf("registry record = %+v, %v", rec, err)
	}

	f.stop()
	f.start()
	d = waitState(t, f.client, inst.ID, "running")
	if d.Route == nil || *d.Route != want {
		t.Fatalf("route after restart = %+v, want %+v", d.Route, want)
	}

	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	d, err = f.client.Status(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Route != nil {
		t.Fatalf("terminated instance still routed: %+v", d.Route)
	}
	if n := len(f.m.Registry().List()); n != 0 {
		t.Fatalf("registry holds %d records after terminate", n)
	}
}

// TestTunnelIdleWithoutRemotes: a local-only manager has no hub running and
// needs no keystore to answer tunnel status.
func TestTunnelIdleWithoutRemotes(t *testing.T) {
	f := newFixture(t)
	f.start()
	st, err := f.client.TunnelPeers(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Hub.Running || st.Hub.PublicKey != "" || len(st.Peers) != 0 {
		t.Fatalf("tunnel status of a local-only manager = %+v; want the hub not running", st)
	}
	if st.Hub.CIDR != "10.77.0.0/16" || st.Hub.Address != "10.77.0.1" || st.Hub.ListenPort != 51820 {
		t.Fatalf("hub defaults = %+v", st.Hub)
	}
}

func idOf(sid uint64) registry.ID { return registry.ID{Main: sid} }
