package ssh

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/testenv"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestIntegrationEstablishTunnel runs a real hub here and has the provider
// start the remote's gateway on a testenv host: the gateway dials in from
// the host's namespace, and the hub reaches an instance the provider
// deployed on that host at its loopback address, through the tunnel alone.
func TestIntegrationEstablishTunnel(t *testing.T) {
	env := testenv.Require(t, "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	hubKey, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	gwKey, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	hubAddr, gwAddr := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.3")
	hub, err := tunnel.NewHub(ctx, tunnel.HubConfig{PrivateKey: hubKey, Address: hubAddr, ListenAddr: ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	const remote = "homelab"
	if err := hub.SetPeers([]tunnel.Peer{{Name: remote, PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		t.Fatal(err)
	}
	spec := provider.TunnelSpec{
		Remote:            remote,
		HubEndpoint:       net.JoinHostPort(env.SSH.HubAddr, strconv.Itoa(int(hub.ListenPort()))),
		HubPublicKey:      hub.PublicKey().String(),
		HubAddress:        hubAddr.String(),
		GatewayAddress:    gwAddr.String() + "/16",
		GatewayPrivateKey: gwKey.Reveal(),
	}

	p := newTestProvider(t, testConfig(env, env.SSH.Hosts[0]))
	c, err := p.pool.get(ctx, p.hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	gwDir := p.gatewayDir(c, remote)
	// Registered after newTestProvider's cleanup, so it runs before the
	// directory is removed.
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.stop(cctx, c, gwDir, handle{}, false); err != nil {
			t.Errorf("stop gateway: %v", err)
		}
	})

	info, err := p.EstablishTunnel(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.GatewayAddress != spec.GatewayAddress {
		t.Errorf("gateway address %q, want %q", info.GatewayAddress, spec.GatewayAddress)
	}
	waitHandshake(ctx, t, hub, remote, time.Time{})

	// The key is in the 0600 spec.json and nowhere on a command line.
	fi, err := c.sftp.Stat(path.Join(gwDir, supervisor.SpecFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("gateway spec.json: %v, %v; want mode 0600", fi, err)
	}
	st, err := p.readStatus(c, gwDir)
	if err != nil {
		t.Fatal(err)
	}
	supPID, supStart, _ := p.supervisorOf(c, gwDir, handle{})
	for _, pid := range []int{supPID, st.ChildPID} {
		cmdline, err := c.readFile("/proc/"+strconv.Itoa(pid)+"/cmdline", 1<<16)
		if err != nil {
			t.Fatalf("cmdline of %d: %v", pid, err)
		}
		if bytes.Contains(cmdline, []byte(spec.GatewayPrivateKey)) {
			t.Fatalf("the private key is on process %d's command line", pid)
		}
	}

	// An instance deployed by the provider on that host, reached by the
	// hub through the gateway at its loopback address.
	pkg := testPackage(t)
	req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: remote, BlueprintID: 1, ServiceID: 1, Package: pkg, Env: pkg.Manifest.Env}
	h, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ref := provider.Ref{InstanceID: req.InstanceID, Handle: h}
	defer p.Terminate(context.Background(), ref)
	ist := waitRunning(ctx, t, p, ref)
	if !strings.HasPrefix(ist.Address, "127.0.0.1:") {
		t.Fatalf("instance address %q is not loopback", ist.Address)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: hub.Via(remote).DialContext}}
	defer hc.CloseIdleConnections()
	var code int
	for {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ist.Address+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(r)
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("GET through the tunnel: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Fatalf("GET /healthz through the tunnel: %d", code)
	}

	// Idempotent: the same spec keeps the running gateway.
	if _, err := p.EstablishTunnel(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if pid, _, alive := p.supervisorOf(c, gwDir, handle{}); !alive || pid != supPID {
		t.Fatalf("same spec: gateway supervisor %d (alive %v), want %d kept", pid, alive, supPID)
	}
	// A changed spec replaces it, and the new gateway dials in again.
	before := time.Now()
	spec.MTU = 1380
	if _, err := p.EstablishTunnel(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if pid, _, alive := p.supervisorOf(c, gwDir, handle{}); !alive || pid == supPID {
		t.Fatalf("changed spec: gateway supervisor %d (alive %v), want a new one", pid, alive)
	}
	if c.alive(supPID, supStart) {
		t.Errorf("old gateway supervisor %d still alive", supPID)
	}
	waitHandshake(ctx, t, hub, remote, before)
}

func waitHandshake(ctx context.Context, t *testing.T, hub *tunnel.Hub, name string, after time.Time) {
	t.Helper()
	for {
		stats, err := hub.PeerStats()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			if s.Name == name && s.LastHandshake.After(after) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no handshake from %s's gateway: %+v", name, stats)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitRunning(ctx context.Context, t *testing.T, p *Provider, ref provider.Ref) provider.Status {
	t.Helper()
	for {
		st, err := p.Status(ctx, ref)
		if err == nil && st.State == provider.StateRunning {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("instance never running: %+v %v", st, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIntegrationPlacement: new instances spread over the hosts, an
// unreachable host is skipped with a warning, and max_instances caps the
// total with ErrQuota.
func TestIntegrationPlacement(t *testing.T) {
	env := testenv.Require(t, "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// 127.0.0.1:1 refuses at once: a host that is down, without waiting
	// out a dial timeout.
	const bogus = "127.0.0.1:1"
	cfg := testConfig(env, bogus, env.SSH.Hosts[0], env.SSH.Hosts[1])
	cfg.MaxInstances = 2
	p := newTestProvider(t, cfg)
	var logs syncBuffer
	p.logger = slog.New(slog.NewTextHandler(&logs, nil))

	hosts := map[string]bool{}
	for range 2 {
		pkg := testPackage(t)
		req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", BlueprintID: 1, ServiceID: 1, Package: pkg, Env: pkg.Manifest.Env}
		h, err := p.Deploy(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ref := provider.Ref{InstanceID: req.InstanceID, Handle: h}
		t.Cleanup(func() { p.Terminate(context.Background(), ref) })
		hd, err := decodeHandle(h)
		if err != nil {
			t.Fatal(err)
		}
		hosts[hd.Host] = true
		waitRunning(ctx, t, p, ref)
	}
	if len(hosts) != 2 || hosts[bogus] {
		t.Errorf("two instances went to hosts %v, want one on each reachable host", hosts)
	}
	if !strings.Contains(logs.String(), "host unreachable") || !strings.Contains(logs.String(), bogus) {
		t.Errorf("no warning about the unreachable host; log:\n%s", logs.String())
	}

	pkg := testPackage(t)
	_, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", Package: pkg, Env: pkg.Manifest.Env})
	if !errors.Is(err, provider.ErrQuota) {
		t.Fatalf("third deploy with max_instances 2: err = %v, want ErrQuota", err)
	}
	r, err := p.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Instances != 0 {
		t.Errorf("resources report %d instances free, want 0", r.Instances)
	}
}
