//go:build !bpm_noremote

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// "relayremote" is procremote's relaying twin, standing in for Kubernetes:
// the gateway shares no socket with the instance. Deploy runs the relay
// sidecar (gateway.RunBridgeRelay) in this process at BRIDGE_SOCKET_PATH,
// with the token the manager passed, aimed at the gateway's relay port,
// then starts the service with the env minus the token (as the provider
// keeps it in the sidecar's secret).
func init() {
	provider.Register(provider.Info{
		Type:      "relayremote",
		Remote:    true,
		NewConfig: func() any { return &relayRemoteConfig{} },
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			return &relayRemote{dir: env.Config.(*relayRemoteConfig).BridgeDir}, nil
		},
	})
}

type relayRemoteConfig struct {
	Type      string        `toml:"type"`
	Tunnel    config.Tunnel `toml:"tunnel"`
	BridgeDir string        `toml:"bridge_dir"`
}

// relayState is what the test and the stand-in share: where the gateway's
// relay listens, and what each deploy got.
var relayState = struct {
	sync.Mutex
	gateway string
	tokens  map[string]string // instance id → token the deploy got
	envs    map[string][]string
	stops   map[string]context.CancelFunc
	addrs   map[string]string
}{tokens: map[string]string{}, envs: map[string][]string{}, stops: map[string]context.CancelFunc{}, addrs: map[string]string{}}

type relayRemote struct {
	procRemote
	dir string
}

func (p *relayRemote) Type() string      { return "relayremote" }
func (p *relayRemote) BridgeRelay() bool { return true }
func (p *relayRemote) BridgeSocketPath(bid, sid uint64) string {
	return bridge.SocketPath(p.dir, bid, sid)
}

func (p *relayRemote) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	tok := req.Env[gateway.EnvRelayToken]
	if tok == "" {
		return nil, errors.New("relayremote: the manager passed no relay token")
	}
	relayState.Lock()
	cfg := gateway.RelayConfig{Listen: req.Env["BRIDGE_SOCKET_PATH"], Gateway: relayState.gateway,
		InstanceID: req.InstanceID, Token: tok}
	relayState.tokens[req.InstanceID] = tok
	relayState.Unlock()
	sctx, cancel := context.WithCancel(context.Background())
	go func() { _ = gateway.RunBridgeRelay(sctx, cfg, nullLog{}) }()
	deadline := time.Now().Add(5 * time.Second)
	for gateway.CheckBridgeRelay(cfg.Listen) != nil {
		if time.Now().After(deadline) {
			cancel()
			return nil, errors.New("relayremote: sidecar socket never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	env := map[string]string{}
	for k, v := range req.Env {
		if k != gateway.EnvRelayToken {
			env[k] = v
		}
	}
	relayState.Lock()
	relayState.stops[req.InstanceID] = cancel
	relayState.Unlock()
	req.Env = env
	h, err := p.procRemote.Deploy(ctx, req)
	if err == nil {
		procs.Lock()
		relayState.Lock()
		relayState.envs[req.InstanceID] = procs.m[req.InstanceID].Env
		relayState.addrs[req.InstanceID] = "127.0.0.1:" + req.Env[testservice.EnvPort]
		relayState.Unlock()
		procs.Unlock()
	}
	return h, err
}

// Status answers from the shared state, so a restarted manager's new
// provider still finds the instance (procremote's memory is per provider).
func (p *relayRemote) Status(_ context.Context, ref provider.Ref) (provider.Status, error) {
	relayState.Lock()
	defer relayState.Unlock()
	if _, ok := relayState.stops[ref.InstanceID]; !ok {
		return provider.Status{}, provider.ErrNotFound
	}
	return provider.Status{State: provider.StateRunning, Address: relayState.addrs[ref.InstanceID]}, nil
}

func (p *relayRemote) Terminate(ctx context.Context, ref provider.Ref) error {
	relayState.Lock()
	if stop := relayState.stops[ref.InstanceID]; stop != nil {
		stop()
	}
	delete(relayState.stops, ref.InstanceID)
	relayState.Unlock()
	return p.procRemote.Terminate(ctx, ref)
}

type nullLog struct{}

func (nullLog) Info(string, ...any) {}
func (nullLog) Warn(string, ...any) {}

// startRelayGateway is startGateway with the relay port on relay.
func startRelayGateway(t *testing.T, f *fixture, remote, relay string) *gateway.Gateway {
	t.Helper()
	pc, err := f.client.TunnelPeerConfig(ctxT(t), remote)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := tunnel.ParseWGQuick(strings.NewReader(pc.Config))
	if err != nil {
		t.Fatal(err)
	}
	p := wc.Peers[0]
	g, err := gateway.Start(context.Background(), gateway.Config{
		HubEndpoint: p.Endpoint, HubPublicKey: p.PublicKey, HubAddress: p.AllowedIPs[0].Addr(),
		PrivateKey: wc.PrivateKey, Address: wc.Addresses[0].Addr(), MTU: wc.MTU,
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		BridgeListen: relay,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g.Close(ctx)
		})
	}
	t.Cleanup(stop)
	return g
}

// TestRemoteBridgeThroughRelay: a service on a relaying remote registers
// through the sidecar and the gateway's relay port with the token the
// manager derived for it; the token reached the provider, not the
// service's environment, and only as the gateway's registered token (the
// gateway's listing shows relay, not the token, and the manager asked it
// to serve no socket of its own). After both the gateway and the manager
// restart, the manager derives the same token again and the sidecar, which
// kept the old one, reaches the bridge. Terminate closes it.
func TestRemoteBridgeThroughRelay(t *testing.T) {
	broot, err := os.MkdirTemp("", "bpm-rl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(broot) })
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.kube]
type = "relayremote"
bridge_dir = "%s/kube"
`, freeUDPPort(t), broot))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)
	relay := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	relayState.Lock()
	relayState.gateway = relay
	relayState.Unlock()
	gw := startRelayGateway(t, f, "kube", relay)

	dir, _ := f.writeBridgePackage()
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "kube"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killProc(inst.ID) })
	rec := waitRegistered(t, f.m.Registry(), inst.ServiceID)
	if rec.InstanceID != inst.ID || rec.Transport != registry.TransportTunnel || rec.Gateway != "kube" {
		t.Fatalf("registered record = %+v", rec)
	}
	relayState.Lock()
	tok, env := relayState.tokens[inst.ID], relayState.envs[inst.ID]
	relayState.Unlock()
	if len(tok) < 32 {
		t.Fatalf("token of %d bytes", len(tok))
	}
	for _, kv := range env {
		if strings.Contains(kv, tok) || strings.HasPrefix(kv, gateway.EnvRelayToken+"=") {
			t.Fatalf("the service's environment holds the relay token (%s)", strings.SplitN(kv, "=", 2)[0])
		}
	}
	// The gateway admits the sidecar by token only: it serves no socket
	// of its own for the instance, and its listing shows no token.
	c := gatewayClientOf(t, f, "kube")
	eps, err := c.BridgeEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].InstanceID != inst.ID || !eps[0].Relay || eps[0].Listen != "" || eps[0].Token != "" {
		t.Fatalf("gateway endpoints = %+v, want one relay endpoint without listen or token", eps)
	}
	// Another instance's id with this token is refused: the token is
	// per instance.
	if cn, err := gateway.DialBridgeRelay(ctx, relay, "bp-other", tok); !errors.Is(err, gateway.ErrRelayRefused) {
		if cn != nil {
			cn.Close()
		}
		t.Fatalf("token for another instance id: %v, want refused", err)
	}

	// Both restart: the new gateway knows nothing until the restarted
	// manager re-exposes the endpoint, with the token derived again.
	gwCloseCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	gw.Close(gwCloseCtx)
	cancel()
	f.stop()
	f.start()
	startRelayGateway(t, f, "kube", relay)
	sock := bridge.SocketPath(broot+"/kube", 4, inst.ServiceID)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := pingVia(ctx, sock)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restarts, the sidecar's old token does not reach the bridge: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	c = gatewayClientOf(t, f, "kube")
	if eps, err := c.BridgeEndpoints(ctx); err != nil || len(eps) != 0 {
		t.Fatalf("gateway endpoints after terminate = %+v, %v; want none", eps, err)
	}
	if cn, err := gateway.DialBridgeRelay(ctx, relay, inst.ID, tok); !errors.Is(err, gateway.ErrRelayRefused) {
		if cn != nil {
			cn.Close()
		}
		t.Fatalf("token after terminate: %v, want refused", err)
	}
}

// pingVia pings the bridge through the socket at path.
func pingVia(ctx context.Context, path string) error {
	bc, err := bridge.DialUnix(path)
	if err != nil {
		return err
	}
	defer bc.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = bc.Ping(pctx, &emptypb.Empty{})
	return err
}

// gatewayClientOf is a control channel client for remote's gateway.
func gatewayClientOf(t *testing.T, f *fixture, remote string) *gateway.Client {
	t.Helper()
	st, err := f.client.TunnelPeers(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Remote == remote {
			c := gateway.NewClient(f.m.DialTunnel, netip.MustParseAddr(p.Address))
			t.Cleanup(c.CloseIdleConnections)
			return c
		}
	}
	t.Fatalf("no peer for %s", remote)
	return nil
}
