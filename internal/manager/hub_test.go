//go:build !bpm_noremote

package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/docker"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/provider/ssh"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// The remote schemas are registered here, as the builtin package does in
// the default build, plus "fakeremote": a remote provider whose deploys
// succeed without a target, so the deploy and terminate paths of the hub
// can run before the real remote providers land.
func init() {
	provider.Register(kubernetes.Info())
	provider.Register(docker.Info())
	provider.Register(ssh.Info())
	provider.Register(provider.Info{
		Type:      "fakeremote",
		Remote:    true,
		NewConfig: func() any { return &fakeRemoteConfig{} },
		New: func(context.Context, provider.Env) (provider.Provider, error) {
			return &fakeRemote{running: map[string]bool{}}, nil
		},
	})
}

type fakeRemoteConfig struct {
	Type   string        `toml:"type"`
	Tunnel config.Tunnel `toml:"tunnel"`
}

// fakeRemote "runs" instances at a fixed address inside its remote.
type fakeRemote struct {
	mu      sync.Mutex
	running map[string]bool
}

const fakeRemoteAddr = "10.1.2.3:8080"

func (p *fakeRemote) Type() string { return "fakeremote" }
func (p *fakeRemote) Deploy(_ context.Context, req provider.DeployRequest) (provider.Handle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[req.InstanceID] = true
	return provider.Handle(req.InstanceID), nil
}
func (p *fakeRemote) Status(_ context.Context, ref provider.Ref) (provider.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running[ref.InstanceID] {
		return provider.Status{}, provider.ErrNotFound
	}
	return provider.Status{State: provider.StateRunning, Address: fakeRemoteAddr}, nil
}
func (p *fakeRemote) Terminate(_ context.Context, ref provider.Ref) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.running, ref.InstanceID)
	return nil
}
func (p *fakeRemote) Resources(context.Context) (provider.Resources, error) {
	return provider.Resources{Instances: -1}, nil
}
func (p *fakeRemote) EstimateCost(context.Context, provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{}, nil
}
func (p *fakeRemote) EstablishTunnel(context.Context, provider.TunnelSpec) (provider.TunnelInfo, error) {
	return provider.TunnelInfo{}, provider.ErrUnsupported
}

// memKeystore is an in-memory Keystore for tests that do not restart.
type memKeystore struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *memKeystore) Get(name string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[name]
	if !ok {
		return "", fmt.Errorf("keystore: %s: %w", name, keystore.ErrNotFound)
	}
	return v, nil
}

func (k *memKeystore) Set(name, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[name] = value
	return nil
}

func memKeystoreOpener() func() (manager.Keystore, error) {
	ks := &memKeystore{m: map[string]string{}}
	return func() (manager.Keystore, error) { return ks, nil }
}

// realKeystoreOpener opens bpm's encrypted keystore in dir, as the CLI does.
func realKeystoreOpener(dir string) func() (manager.Keystore, error) {
	return func() (manager.Keystore, error) {
		pass, err := keystore.NewPassphrase("test passphrase")
		if err != nil {
			return nil, err
		}
		return keystore.Open(dir, pass)
	}
}

// freeUDPPort returns a UDP port nothing listens on right now, so a hub
// can come back on the same port after a restart.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// A real WireGuard key (`wg genkey`) an operator put in the config.
const operatorKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="

func remotesConfig(port int) string {
	return fmt.Sprintf(`
[hub]
listen = ":%d"
cidr = "10.88.0.0/24"
keepalive = "5s"

[remote.homelab]
type = "ssh"
hosts = ["homelab.example.org"]
user = "bpm"

[remote.aws]
type = "docker"
endpoint = "unix:///var/run/docker.sock"

[remote.aws.tunnel]
private_key = %q

[remote.eks]
type = "kubernetes"
namespace = "bp"
`, port, operatorKey)
}

// spokeFrom joins the hub as a plain WireGuard peer configured only from an
// exported wg-quick file, and serves a gateway-like /healthz on its control
// port and a plain HTTP service on port 8080 of its tunnel address.
func spokeFrom(t *testing.T, text string) (*tunnel.Spoke, *tunnel.WGQuickConfig) {
	t.Helper()
	wc, err := tunnel.ParseWGQuick(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exported config does not parse: %v", err)
	}
	if len(wc.Peers) != 1 || len(wc.Addresses) != 1 || len(wc.Peers[0].AllowedIPs) != 1 {
		t.Fatalf("exported config has %d peers, %d addresses: %+v", len(wc.Peers), len(wc.Addresses), wc)
	}
	p := wc.Peers[0]
	sp, err := tunnel.NewSpoke(context.Background(), tunnel.SpokeConfig{
		PrivateKey:    wc.PrivateKey,
		Address:       wc.Addresses[0].Addr(),
		HubPublicKey:  p.PublicKey,
		HubEndpoint:   p.Endpoint,
		HubAddress:    p.AllowedIPs[0].Addr(),
		Keepalive:     p.Keepalive,
		MTU:           wc.MTU,
		ProbeInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	serve := func(port uint16, h http.Handler) {
		l, err := sp.Listen(port)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	serve(tunnel.ControlPort, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(gateway.Status{Status: "ok", Address: sp.Address().String()})
	}))
	serve(8080, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from behind the spoke")
	}))
	return sp, wc
}

// waitPeerHealth polls tunnel status until remote's peer reports health.
func waitPeerHealth(t *testing.T, c *api.Client, remote, health string, within time.Duration) api.TunnelPeer {
	t.Helper()
	deadline := time.Now().Add(within)
	var last api.TunnelStatus
	for {
		st, err := c.TunnelPeers(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		last = st
		for _, p := range st.Peers {
			if p.Remote == remote && p.Health == health {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s not %s within %s: %+v", remote, health, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func peerNames(st api.TunnelStatus) []string {
	var out []string
	for _, p := range st.Peers {
		out = append(out, p.Remote)
	}
	return out
}

// TestExportPeerInterop: export-peer from a real manager with ssh, docker and
// kubernetes remotes configured; the file is standard wg-quick; a peer
// configured from it alone completes a handshake with the manager's hub;
// the hub reaches an HTTP server behind it; keys and addresses survive a
// manager restart, after which the peer comes back on its own.
func TestExportPeerInterop(t *testing.T) {
	port := freeUDPPort(t)
	f := newFixtureConfig(t, remotesConfig(port))
	ksDir := filepath.Join(f.root, "keystore")
	f.keystore = realKeystoreOpener(ksDir)
	f.start()
	ctx := ctxT(t)

	if st, err := f.client.TunnelPeers(ctx); err != nil || st.Hub.Running {
		t.Fatalf("hub running before any remote needs it: %+v, %v", st, err)
	}

	pc, err := f.client.TunnelPeerConfig(ctx, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	_, wc := spokeFrom(t, pc.Config)
	if got := wc.Addresses[0].String(); got != "10.88.0.2/32" {
		t.Errorf("homelab tunnel address %s, want 10.88.0.2/32 (the first after the hub)", got)
	}
	hp := wc.Peers[0]
	if hp.Endpoint != fmt.Sprintf("127.0.0.1:%d", port) || hp.AllowedIPs[0].String() != "10.88.0.1/32" || hp.Keepalive != 5*time.Second {
		t.Errorf("hub peer in the export = %+v", hp)
	}

	p := waitPeerHealth(t, f.client, "homelab", "ok", 30*time.Second)
	if p.LastHandshake == nil || p.RxBytes == 0 || p.Address != "10.88.0.2" {
		t.Errorf("peer after handshake = %+v", p)
	}
	st, err := f.client.TunnelPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Hub.Running || st.Hub.PublicKey != hp.PublicKey.String() || st.Hub.ListenPort != port {
		t.Errorf("hub = %+v, want running with the exported public key on port %d", st.Hub, port)
	}
	getThroughTunnel(t, f.m, "10.88.0.2:8080")

	// The operator's own key is used for aws; it is not written anywhere new.
	apc, err := f.client.TunnelPeerConfig(ctx, "aws")
	if err != nil {
		t.Fatal(err)
	}
	awc, err := tunnel.ParseWGQuick(strings.NewReader(apc.Config))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := tunnel.ParsePrivateKey(operatorKey); !awc.PrivateKey.Equal(want) {
		t.Error("aws export does not carry the operator's [remote.aws.tunnel] private_key")
	}

	if _, err := f.client.TunnelPeerConfig(ctx, "nosuch"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("export of an unknown remote = %v, want not found", err)
	}

	// Keys are encrypted at rest: the keystore file holds neither the hub's
	// nor the generated spoke key in clear.
	raw, err := os.ReadFile(filepath.Join(ksDir, keystore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), wc.PrivateKey.Reveal()) {
		t.Error("keystore file holds the spoke key in clear")
	}
	// The manager's state (clear text) holds no private key either.
	for _, name := range []string{"state.db", "state.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(f.cfg.Manager.DataDir, name))
		if strings.Contains(string(b), wc.PrivateKey.Reveal()) || strings.Contains(string(b), operatorKey) {
			t.Errorf("%s holds a private key in clear", name)
		}
	}

	f.stop()
	f.start()
	pc2, err := f.client.TunnelPeerConfig(ctx, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	if pc2.Config != pc.Config {
		t.Errorf("export changed across a manager restart:\n%s\n---\n%s", pc.Config, pc2.Config)
	}
	st, err = f.client.TunnelPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(peerNames(st), ","); got != "aws,homelab" {
		t.Errorf("peers after restart = %s, want the two exported remotes aws,homelab", got)
	}
	// The peer joined from the file alone comes back to the new hub.
	waitPeerHealth(t, f.client, "homelab", "ok", 45*time.Second)
	getThroughTunnel(t, f.m, "10.88.0.2:8080")
}

// getThroughTunnel makes the manager's hub fetch addr's HTTP page.
func getThroughTunnel(t *testing.T, m *manager.Manager, addr string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: m.DialTunnel}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("hub to %s through the tunnel: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello from behind the spoke" {
		t.Fatalf("through the tunnel: %d %q", resp.StatusCode, b)
	}
}

// TestHubNeedsKeystore: without a keystore the hub refuses to start with an
// error naming the variables, records nothing, and the manager still serves.
func TestHubNeedsKeystore(t *testing.T) {
	f := newFixtureConfig(t, remotesConfig(freeUDPPort(t)))
	f.start()
	ctx := ctxT(t)
	_, err := f.client.TunnelPeerConfig(ctx, "homelab")
	if err == nil || !strings.Contains(err.Error(), keystore.EnvPassphrase) || !strings.Contains(err.Error(), keystore.EnvKeyFile) {
		t.Fatalf("export without a keystore = %v; want an error naming %s and %s", err, keystore.EnvPassphrase, keystore.EnvKeyFile)
	}
	st, err := f.client.TunnelPeers(ctx)
	if err != nil || st.Hub.Running || len(st.Peers) != 0 {
		t.Fatalf("after a refused export: %+v, %v; want no hub and no peers", st, err)
	}
}

// TestRemoteDeployPeerLifecycle: a deploy to a remote adds its peer and a
// tunnel route; terminating its last instance removes both, unless the
// remote was exported by hand.
func TestRemoteDeployPeerLifecycle(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf(`
[hub]
listen = ":%d"

[remote.edge]
type = "fakeremote"

[remote.lab]
type = "fakeremote"
`, freeUDPPort(t)))
	f.keystore = memKeystoreOpener()
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")

	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	d := waitState(t, f.client, inst.ID, "running")
	want := api.Route{Service: "1:0", Transport: "tunnel", Gateway: "edge", Upstream: "http://" + fakeRemoteAddr}
	if d.Route == nil || *d.Route != want {
		t.Fatalf("remote route = %+v, want %+v", d.Route, want)
	}
	st, err := f.client.TunnelPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Hub.Running || strings.Join(peerNames(st), ",") != "edge" || st.Peers[0].Health != "unknown" {
		t.Fatalf("after a deploy to edge: %+v", st)
	}

	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ = f.client.TunnelPeers(ctx); len(st.Peers) != 0 {
		t.Fatalf("edge's last instance terminated, peers still %v", peerNames(st))
	}
	if d, _ = f.client.Status(ctx, inst.ID); d.Route != nil {
		t.Fatalf("terminated remote instance still routed: %+v", d.Route)
	}

	// An exported remote keeps its peer through its instances' lifetimes.
	if _, err := f.client.TunnelPeerConfig(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	inst, err = f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ = f.client.TunnelPeers(ctx); strings.Join(peerNames(st), ",") != "lab" {
		t.Fatalf("exported remote lab lost its peer on terminate: %v", peerNames(st))
	}
}

// TestRemoteDeployWithoutKeystore: a deploy to a remote whose hub cannot
// start fails clearly, after the intent row, and leaves the row failed.
func TestRemoteDeployWithoutKeystore(t *testing.T) {
	f := newFixtureConfig(t, fmt.Sprintf("[hub]\nlisten = \":%d\"\n[remote.edge]\ntype = \"fakeremote\"\n", freeUDPPort(t)))
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	_, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Remote: "edge"})
	if err == nil || !strings.Contains(err.Error(), keystore.EnvPassphrase) {
		t.Fatalf("deploy without a keystore = %v", err)
	}
	all, err := f.client.List(ctx, api.ListOptions{All: true})
	if err != nil || len(all) != 1 || all[0].State != "failed" || !strings.Contains(all[0].Message, keystore.EnvPassphrase) {
		t.Fatalf("rows after a refused remote deploy = %+v, %v", all, err)
	}
}
