//go:build !bpm_noremote

package manager_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// "procremote" is a stand-in remote provider whose "remote host" is this
// machine: Deploy starts the service as a real process on loopback (the
// test binary in its bridge-service mode) with the environment the manager
// gives it, and BridgeSocketPath puts the bridge endpoint under bridge_dir,
// where the remote's gateway serves it. Everything between the service and
// the manager is real: the gateway, the tunnel, the hub, the bridge, the
// proxy.
func init() {
	provider.Register(provider.Info{
		Type:      "procremote",
		Remote:    true,
		NewConfig: func() any { return &procRemoteConfig{} },
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			return &procRemote{dir: env.Config.(*procRemoteConfig).BridgeDir}, nil
		},
	})
}

type procRemoteConfig struct {
	Type      string        `toml:"type"`
	Tunnel    config.Tunnel `toml:"tunnel"`
	BridgeDir string        `toml:"bridge_dir"`
}

// procs are the stand-in's processes by instance id, so a failed test
// still kills them.
var procs = struct {
	sync.Mutex
	m map[string]*exec.Cmd
}{m: map[string]*exec.Cmd{}}

type procRemote struct {
	dir  string
	mu   sync.Mutex
	addr map[string]string
}

func (p *procRemote) Type() string { return "procremote" }

func (p *procRemote) BridgeSocketPath(bid, sid uint64) string {
	return bridge.SocketPath(p.dir, bid, sid)
}

func (p *procRemote) Deploy(_ context.Context, req provider.DeployRequest) (provider.Handle, error) {
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BPM_TEST_SUPERVISOR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go cmd.Wait()
	procs.Lock()
	procs.m[req.InstanceID] = cmd
	procs.Unlock()
	p.mu.Lock()
	if p.addr == nil {
		p.addr = map[string]string{}
	}
	p.addr[req.InstanceID] = "127.0.0.1:" + req.Env[testservice.EnvPort]
	p.mu.Unlock()
	return provider.Handle(req.InstanceID), nil
}

func (p *procRemote) Status(_ context.Context, ref provider.Ref) (provider.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.addr[ref.InstanceID]
	if !ok {
		return provider.Status{}, provider.ErrNotFound
	}
	return provider.Status{State: provider.StateRunning, Address: a}, nil
}

func (p *procRemote) Terminate(_ context.Context, ref provider.Ref) error {
	p.mu.Lock()
	delete(p.addr, ref.InstanceID)
	p.mu.Unlock()
	killProc(ref.InstanceID)
	return nil
}

func killProc(id string) {
	procs.Lock()
	cmd := procs.m[id]
	delete(procs.m, id)
	procs.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func (p *procRemote) Resources(context.Context) (provider.Resources, error) {
	return provider.Resources{Instances: -1}, nil
}
func (p *procRemote) EstimateCost(context.Context, provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{}, nil
}
func (p *procRemote) EstablishTunnel(context.Context, provider.TunnelSpec) (provider.TunnelInfo, error) {
	return provider.TunnelInfo{}, provider.ErrUnsupported
}

// startGateway runs a real gateway for remote, joined to f's hub with the
// peer config the manager exports.
func startGateway(t *testing.T, f *fixture, remote string) *gateway.Gateway {
	t.Helper()
	ctx := ctxT(t)
	pc, err := f.client.TunnelPeerConfig(ctx, remote)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := tunnel.ParseWGQuick(strings.NewReader(pc.Config))
	if err != nil {
		t.Fatal(err)
	}
	var allow []netip.Prefix
	for _, s := range gateway.DefaultAllow {
		allow = append(allow, netip.MustParsePrefix(s))
	}
	p := wc.Peers[0]
	g, err := gateway.Start(context.Background(), gateway.Config{
		HubEndpoint:  p.Endpoint,
		HubPublicKey: p.PublicKey,
		HubAddress:   p.AllowedIPs[0].Addr(),
		PrivateKey:   wc.PrivateKey,
		Address:      wc.Addresses[0].Addr(),
		Allow:        allow,
		MTU:          wc.MTU,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(cctx)
	})
	return g
}

// TestRemoteBridgeThroughGateway is issue 5's remote case with real parts:
// a service on a remote registers through the bridge endpoint its gateway
// serves on the remote, relayed over the tunnel to the manager; an
// operator's key and token then reach it through the proxy and the tunnel;
// another remote's gateway cannot reach its bridge; terminating it removes
// its route (404) and the gateway's endpoint.
func TestRemoteBridgeThroughGateway(t *testing.T) {
	// The "remote hosts'" bridge directories: short, for unix socket paths.
	broot, err := os.MkdirTemp("", "bpm-gw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(broot) })
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.edge]
type = "procremote"
bridge_dir = "%s/edge"

[remote.lab]
type = "procremote"
bridge_dir = "%s/lab"
`, freeUDPPort(t), broot, broot))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)
	startGateway(t, f, "edge")
	lab := startGateway(t, f, "lab")

	dir, port := f.writeBridgePackage()
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killProc(inst.ID) })
	sid := inst.ServiceID
	rec := waitRegistered(t, f.m.Registry(), sid)
	if rec.InstanceID != inst.ID || rec.Transport != registry.TransportTunnel || rec.Gateway != "edge" ||
		rec.UpstreamURL != "http://127.0.0.1:"+itoa(port) || rec.APIKeyPrefix != "tst_" {
		t.Fatalf("registered record = %+v", rec)
	}
	// The endpoint is the gateway's, on the remote, with the modes of a
	// local bridge socket.
	sock := bridge.SocketPath(filepath.Join(broot, "edge"), 4, sid)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gateway's bridge endpoint %s: %v %v", sock, fi, err)
	}

	// Operator key -> token -> request through the proxy and the tunnel.
	purl := proxyURLOf(t, f.client)
	created, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid, Label: "remote"})
	if err != nil {
		t.Fatal(err)
	}
	tok := exchange(t, purl, created.APIKey.Reveal())
	if code, body := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusOK || !strings.Contains(body, "hello from bpm-test-service") {
		t.Fatalf("through the proxy and the tunnel: %d %q", code, body)
	}

	// Another remote's gateway cannot reach this instance's bridge: not by
	// naming its id at the hub, and not through an endpoint it is told to
	// serve for it.
	if c, err := lab.Spoke().DialBridge(ctx, inst.ID); !errors.Is(err, tunnel.ErrRelayForbidden) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("lab's gateway dialing edge's instance bridge = %v, want refused", err)
	}
	labSock := filepath.Join(broot, "lab", "stolen.sock")
	if err := labExpose(ctx, f, inst.ID, labSock); err != nil {
		t.Fatal(err)
	}
	bc, err := bridge.DialUnix(labSock)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := bc.Ping(pctx, &emptypb.Empty{}); err == nil {
		t.Fatal("a ping through lab's gateway reached edge's instance bridge")
	}
	cancel()
	bc.Close()
	// The edge endpoint still works for its own instance.
	bc, err = bridge.DialUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.Ping(ctx, &emptypb.Empty{}); err != nil {
		t.Fatalf("ping through edge's endpoint: %v", err)
	}
	bc.Close()

	// Terminate: route gone, the service's keys revoked (the proxy refuses
	// the token before looking for a route), endpoint closed.
	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if code, body := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusUnauthorized {
		t.Fatalf("after terminate: %d %q, want 401", code, body)
	}
	if _, err := f.m.Registry().Get(idOf(inst.ServiceID)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("route after terminate: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("gateway's endpoint left behind after terminate: %v", err)
	}
}

// labExpose tells lab's gateway, as the manager would, to serve a bridge
// endpoint for an instance of another remote.
func labExpose(ctx context.Context, f *fixture, id, path string) error {
	st, err := f.client.TunnelPeers(ctx)
	if err != nil {
		return err
	}
	for _, p := range st.Peers {
		if p.Remote == "lab" {
			c := gateway.NewClient(f.m.DialTunnel, netip.MustParseAddr(p.Address))
			defer c.CloseIdleConnections()
			_, err := c.ExposeBridge(ctx, gateway.BridgeEndpoint{InstanceID: id, Listen: path})
			return err
		}
	}
	return errors.New("no lab peer")
}

func TestRemoteUpstreamRewritesLoopback(t *testing.T) {
	f := newFixtureConfig(t, `
[remote.edge]
type = "procremote"
bridge_dir = "/nonexistent"
`)
	f.start()
	ctx := ctxT(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A container instance: it answers on its own network address.
	must(f.m.Store().CreateInstance(ctx, state.Instance{ID: "bp-container", Remote: "edge", ProviderType: "procremote",
		BlueprintName: "x", State: provider.StateRunning, Address: "10.1.2.3:9000"}))
	for _, c := range []struct{ in, want string }{
		{"http://127.0.0.1:8080", "http://10.1.2.3:8080"},
		{"http://0.0.0.0:8080/base", "http://10.1.2.3:8080/base"},
		{"http://[::1]:8080", "http://10.1.2.3:8080"},
		{"http://localhost:8080", "http://10.1.2.3:8080"},
		{"http://127.0.0.1", "http://10.1.2.3:80"},
		// The service's own word is kept.
		{"http://10.9.9.9:1234", "http://10.9.9.9:1234"},
		{"http://svc.internal:8080", "http://svc.internal:8080"},
		{"unix:///run/x.sock", "unix:///run/x.sock"},
	} {
		got, err := manager.RemoteUpstream(f.m, ctx, "bp-container", "edge", c.in)
		if err != nil || got != c.want {
			t.Errorf("remoteUpstream(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	// No address recorded and none reported: refused once the wait is up,
	// never recorded as the gateway's own loopback.
	must(f.m.Store().CreateInstance(ctx, state.Instance{ID: "bp-noaddr", Remote: "edge", ProviderType: "procremote",
		BlueprintName: "x", State: provider.StateCreating}))
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if got, err := manager.RemoteUpstream(f.m, sctx, "bp-noaddr", "edge", "http://127.0.0.1:8080"); err == nil {
		t.Errorf("an instance with no address: %q, want an error", got)
	}
}

// TestRemoteCheckThroughGateway: a remote's health checks run inside the
// remote, through its gateway's control channel, once the remote has a
// peer; before that they run from here.
func TestRemoteCheckThroughGateway(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.edge]
type = "procremote"
bridge_dir = "/nonexistent"

[remote.lab]
type = "procremote"
bridge_dir = "/nonexistent"
`, freeUDPPort(t)))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)
	g := startGateway(t, f, "edge")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up := health.Spec{Address: ln.Addr().String(), HTTPPath: "/healthz", Timeout: 2 * time.Second}
	wrongPath := up
	wrongPath.HTTPPath = "/nope"

	if err := manager.RemoteCheck(f.m, ctx, "edge", up); err != nil {
		t.Errorf("healthy instance through the gateway: %v", err)
	}
	if err := manager.RemoteCheck(f.m, ctx, "edge", wrongPath); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("failing check through the gateway: %v, want the gateway's 404", err)
	}
	// No peer for lab yet: checked from this process.
	if err := manager.RemoteCheck(f.m, ctx, "lab", up); err != nil {
		t.Errorf("remote with no gateway: %v", err)
	}
	// The gateway gone but its peer configured: the check says which
	// gateway it could not ask, rather than pretending from here.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	g.Close(cctx)
	cancel()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := manager.RemoteCheck(f.m, sctx, "edge", up); err == nil || !strings.Contains(err.Error(), "edge gateway") {
		t.Errorf("with the gateway down: %v, want an error naming it", err)
	}
}
