//go:build !bpm_noremote

package manager_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

// gwRemote is fakeRemote whose EstablishTunnel does what a real provider's
// does, in-process: it starts a real gateway from the TunnelSpec the
// manager hands it, through exactly the environment `bpm gateway` reads.
type gwRemote struct {
	fakeRemote
}

// gwStarted collects the gateways gwRemote started, so the test that made
// them can close them.
var gwStarted = struct {
	sync.Mutex
	byRemote map[string]*gateway.Gateway
	specs    map[string]provider.TunnelSpec
}{byRemote: map[string]*gateway.Gateway{}, specs: map[string]provider.TunnelSpec{}}

func init() {
	provider.Register(provider.Info{
		Type:      "gwremote",
		Remote:    true,
		NewConfig: func() any { return &fakeRemoteConfig{} },
		New: func(context.Context, provider.Env) (provider.Provider, error) {
			return &gwRemote{fakeRemote{running: map[string]bool{}}}, nil
		},
	})
}

func (p *gwRemote) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	gwStarted.Lock()
	defer gwStarted.Unlock()
	gwStarted.specs[spec.Remote] = spec
	if _, ok := gwStarted.byRemote[spec.Remote]; ok {
		return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil // once per remote
	}
	env := spec.GatewayEnv()
	cfg, err := gateway.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		return provider.TunnelInfo{}, fmt.Errorf("gateway config from the tunnel spec: %w", err)
	}
	g, err := gateway.Start(context.WithoutCancel(ctx), cfg, nil)
	if err != nil {
		return provider.TunnelInfo{}, err
	}
	gwStarted.byRemote[spec.Remote] = g
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// TestDeployEstablishesTheRemotesTunnel: a deploy to a remote asks its
// provider to establish the tunnel with a spec a real gateway can run
// from; that gateway dials in and the hub sees it healthy. A second deploy
// to the same remote reuses it.
func TestDeployEstablishesTheRemotesTunnel(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf("[hub]\nlisten = \":%d\"\n\n[remote.edge]\ntype = \"gwremote\"\n", freeUDPPort(t)))
	f.keystore = memKeystoreOpener()
	f.start()
	t.Cleanup(func() {
		gwStarted.Lock()
		defer gwStarted.Unlock()
		for name, g := range gwStarted.byRemote {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g.Close(cctx)
			cancel()
			delete(gwStarted.byRemote, name)
		}
	})
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	if _, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "edge"}); err != nil {
		t.Fatal(err)
	}
	gwStarted.Lock()
	spec, ok := gwStarted.specs["edge"]
	gwStarted.Unlock()
	if !ok {
		t.Fatal("the provider was never asked to establish the tunnel")
	}
	st, err := f.client.TunnelPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if spec.HubPublicKey != st.Hub.PublicKey || spec.HubAddress != st.Hub.Address || len(st.Peers) != 1 ||
		spec.GatewayAddress != st.Peers[0].Address+"/16" || spec.GatewayPrivateKey == "" {
		t.Fatalf("spec %+v does not match the hub %+v", spec, st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err = f.client.TunnelPeers(ctx)
		if err == nil && len(st.Peers) == 1 && st.Peers[0].Health == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway started from the spec never became healthy: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dir2, _ := f.writePackage("http")
	if _, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir2, Remote: "edge"}); err != nil {
		t.Fatal(err)
	}
	gwStarted.Lock()
	n := len(gwStarted.byRemote)
	gwStarted.Unlock()
	if n != 1 {
		t.Fatalf("%d gateways for one remote", n)
	}
}
