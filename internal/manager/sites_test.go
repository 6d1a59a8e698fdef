//go:build !bpm_noremote

package manager_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
)

// sitedRemote is procRemote's processes behind a Sited provider that
// places instances on sites "s1", "s2", "s1", ... and records the tunnel
// specs it is asked to establish.
type sitedRemote struct {
	inner *procRemote
	mu    sync.Mutex
	n     int
	specs []provider.TunnelSpec
}

var sited = &sitedRemote{inner: &procRemote{}}

func init() {
	provider.Register(provider.Info{
		Type:      "sitedremote",
		Remote:    true,
		NewConfig: func() any { return &procRemoteConfig{} },
		New:       func(context.Context, provider.Env) (provider.Provider, error) { return sited, nil },
	})
}

func (p *sitedRemote) Type() string { return "sitedremote" }
func (p *sitedRemote) Place(_ context.Context, req provider.DeployRequest) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return fmt.Sprintf("s%d", 2-p.n%2), nil
}
func (p *sitedRemote) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	if req.Site == "" {
		return nil, fmt.Errorf("deploy without the placed site")
	}
	return p.inner.Deploy(ctx, req)
}
func (p *sitedRemote) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	return p.inner.Status(ctx, ref)
}
func (p *sitedRemote) Terminate(ctx context.Context, ref provider.Ref) error {
	return p.inner.Terminate(ctx, ref)
}
func (p *sitedRemote) Resources(ctx context.Context) (provider.Resources, error) {
	return p.inner.Resources(ctx)
}
func (p *sitedRemote) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return p.inner.EstimateCost(ctx, req)
}
func (p *sitedRemote) EstablishTunnel(_ context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.specs = append(p.specs, spec)
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// TestSitesGetTheirOwnPeer: a Sited provider's instances sit behind one
// hub peer per site ("REMOTE.SITE"), each with its own key and tunnel
// address handed to EstablishTunnel; routes name that peer; the instance
// shows its site; and a site's peer goes with its last instance.
func TestSitesGetTheirOwnPeer(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.farm]
type = "sitedremote"
`, freeUDPPort(t)))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)

	var insts []api.Instance
	for range 3 {
		dir, _ := f.writePackage("http")
		in, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "farm"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { killProc(in.ID) })
		insts = append(insts, in)
	}
	if insts[0].Site != "s1" || insts[1].Site != "s2" || insts[2].Site != "s1" {
		t.Fatalf("sites = %q %q %q, want s1 s2 s1", insts[0].Site, insts[1].Site, insts[2].Site)
	}
	sited.mu.Lock()
	specs := slices.Clone(sited.specs)
	sited.mu.Unlock()
	if len(specs) != 3 || specs[0].Site != "s1" || specs[1].Site != "s2" || specs[2].Site != "s1" {
		t.Fatalf("tunnel specs = %v, want one per deploy for its site", specs)
	}
	if specs[0].GatewayAddress == specs[1].GatewayAddress || specs[0].GatewayPrivateKey == specs[1].GatewayPrivateKey {
		t.Error("two sites share a tunnel address or key")
	}
	if specs[0].GatewayAddress != specs[2].GatewayAddress || specs[0].GatewayPrivateKey != specs[2].GatewayPrivateKey {
		t.Error("one site got two different tunnel addresses or keys")
	}

	peers := func() []string {
		st, err := f.client.TunnelPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range st.Peers {
			out = append(out, p.Remote)
		}
		slices.Sort(out)
		return out
	}
	if got := peers(); !slices.Equal(got, []string{"farm.s1", "farm.s2"}) {
		t.Fatalf("hub peers = %v, want farm.s1 and farm.s2", got)
	}
	for _, in := range insts {
		rec, err := f.m.Registry().Get(registry.ID{Main: in.ServiceID})
		if err != nil || rec.Gateway != "farm."+in.Site || rec.Transport != registry.TransportTunnel {
			t.Errorf("route of %s: %+v, %v; want gateway farm.%s", in.ID, rec, err, in.Site)
		}
	}

	// s2's only instance goes, and its peer with it; s1 keeps its own.
	if _, err := f.client.Terminate(ctx, insts[1].ID); err != nil {
		t.Fatal(err)
	}
	if got := peers(); !slices.Equal(got, []string{"farm.s1"}) {
		t.Fatalf("hub peers after s2's last instance = %v, want farm.s1", got)
	}
}

// failRemote fails every deploy after "making" something, and records
// which instances it was asked to terminate.
type failRemote struct {
	sitedRemote
	terminated []string
}

var failing = &failRemote{sitedRemote: sitedRemote{inner: &procRemote{}}}

func init() {
	provider.Register(provider.Info{
		Type:      "failremote",
		Remote:    true,
		NewConfig: func() any { return &procRemoteConfig{} },
		New:       func(context.Context, provider.Env) (provider.Provider, error) { return failing, nil },
	})
}

func (p *failRemote) Type() string { return "failremote" }
func (p *failRemote) Deploy(context.Context, provider.DeployRequest) (provider.Handle, error) {
	return nil, fmt.Errorf("engine said no")
}
func (p *failRemote) Terminate(_ context.Context, ref provider.Ref) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.terminated = append(p.terminated, ref.InstanceID)
	return nil
}

// TestTerminateFailedRemoteDeploy: a remote instance whose deploy failed
// has no handle, but terminating it still asks its provider to remove
// whatever the attempt left (found by instance id), so nothing — a created
// container, the remote's gateway — outlives it.
func TestTerminateFailedRemoteDeploy(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.broken]
type = "failremote"
`, freeUDPPort(t)))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	if _, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "broken"}); err == nil {
		t.Fatal("deploy to a remote whose provider fails succeeded")
	}
	list, err := f.client.List(ctx, api.ListOptions{All: true})
	if err != nil || len(list) != 1 || list[0].State != "failed" {
		t.Fatalf("list = %+v, %v; want the failed instance", list, err)
	}
	if _, err := f.client.Terminate(ctx, list[0].ID); err != nil {
		t.Fatal(err)
	}
	failing.mu.Lock()
	got := slices.Clone(failing.terminated)
	failing.mu.Unlock()
	if !slices.Contains(got, list[0].ID) {
		t.Errorf("provider terminated %v, want %s (no handle, found by id)", got, list[0].ID)
	}
}
