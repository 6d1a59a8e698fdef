package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
	"github.com/bpm-project/bpm/internal/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// bpmBinary is what runs `supervise` on the hosts: $BPM_TEST_SSH_BPM (a
// built bpm) when set, else this test binary (see TestMain).
func bpmBinary(t testing.TB) string {
	if b := os.Getenv("BPM_TEST_SSH_BPM"); b != "" {
		return b
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

func testConfig(env *testenv.Env, hosts ...string) *Config {
	c := NewConfig()
	c.Hosts = hosts
	c.User = env.SSH.User
	c.Key = env.SSH.Key
	c.KnownHosts = env.SSH.KnownHosts
	// Whatever ~/.ssh/config the machine running the tests has stays out
	// of them.
	c.SSHConfig = os.DevNull
	c.Runtime = Runtime{Type: RuntimeNative}
	return c
}

// newTestProvider builds a provider whose service binary is this test
// binary (see TestMain). baseDir keeps test runs apart from each other.
func newTestProvider(t testing.TB, cfg *Config) *Provider {
	t.Helper()
	// Benchmarks print every log line with their results: keep only what
	// is wrong.
	level := slog.LevelDebug
	if _, ok := t.(*testing.B); ok {
		level = slog.LevelWarn
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Options{
		Binary:      bpmBinary(t),
		BaseDir:     ".bpm-test/" + randHex(4),
		GracePeriod: 3 * time.Second,
		Executable: func(context.Context, *blueprint.Package, Platform) (string, []string, error) {
			return self, nil, nil
		},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Remove this run's directory from the hosts (they may share a home).
		if c, err := p.pool.get(context.Background(), p.hosts[0]); err == nil {
			_, _ = c.run(context.Background(), command("rm", "-rf", "--", p.base(c)))
		}
		p.Close()
	})
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func randPort() int {
	n, _ := rand.Int(rand.Reader, big.NewInt(20000))
	return 30000 + int(n.Int64())
}

func testPackage(t testing.TB, env ...string) *blueprint.Package {
	port := randPort()
	m := blueprint.Manifest{
		Name:    "bpm-test",
		Version: "0.0.1",
		Ports:   []blueprint.Port{{Name: "http", Port: port, Protocol: "tcp"}},
		Health:  &blueprint.Health{HTTP: "/healthz", Timeout: blueprint.Duration{Duration: 2 * time.Second}},
		Env: map[string]string{
			testservice.EnvMode: "http",
			testservice.EnvPort: strconv.Itoa(port),
		},
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m.Env[k] = v
	}
	dir := t.TempDir()
	return &blueprint.Package{Manifest: m, Dir: dir, File: filepath.Join(dir, "blueprint.toml")}
}

func TestIntegrationConnectEachHost(t *testing.T) {
	env := testenv.Require(t, "ssh")
	p := newTestProvider(t, testConfig(env, env.SSH.Hosts...))
	ctx := context.Background()
	for _, h := range p.hosts {
		c, err := p.pool.get(ctx, h)
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		out, err := c.run(ctx, command("id", "-un"))
		if err != nil || strings.TrimSpace(out) != env.SSH.User {
			t.Fatalf("%s: id -un = %q, %v", h, out, err)
		}
		// Reuse: a second get returns the same connection.
		c2, _ := p.pool.get(ctx, h)
		if c2 != c {
			t.Errorf("%s: connection not reused", h)
		}
		pl, err := c.platform(ctx)
		if err != nil || pl != hostPlatform() {
			t.Errorf("%s: platform %v, %v", h, pl, err)
		}
	}
}

func TestIntegrationHostKeys(t *testing.T) {
	env := testenv.Require(t, "ssh")
	host := env.SSH.Hosts[0]
	ctx := context.Background()
	dir := t.TempDir()

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := ssh.NewPublicKey(pub)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte(knownhosts.Line([]string{knownhosts.Normalize(host)}, wrong)+"\n"), 0o600)

	for _, tofu := range []bool{false, true} {
		cfg := testConfig(env, host)
		cfg.KnownHosts, cfg.TrustOnFirstUse = wrongFile, tofu
		if _, err := newTestProvider(t, cfg).pool.get(ctx, addrOf(host)); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("changed host key (tofu %v): err = %v, want refusal", tofu, err)
		}
	}

	tofuFile := filepath.Join(dir, "sub", "tofu")
	cfg := testConfig(env, host)
	cfg.KnownHosts = tofuFile
	if _, err := newTestProvider(t, cfg).pool.get(ctx, addrOf(host)); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("unknown host without tofu: err = %v, want refusal", err)
	}
	cfg.TrustOnFirstUse = true
	if _, err := newTestProvider(t, cfg).pool.get(ctx, addrOf(host)); err != nil {
		t.Fatalf("tofu: %v", err)
	}
	b, _ := os.ReadFile(tofuFile)
	if !strings.Contains(string(b), knownhosts.Normalize(host)) {
		t.Fatalf("tofu did not record the key: %q", b)
	}
	// Recorded: now strict mode accepts it, and a different key is refused
	// even with tofu on.
	cfg2 := testConfig(env, host)
	cfg2.KnownHosts = tofuFile
	if _, err := newTestProvider(t, cfg2).pool.get(ctx, addrOf(host)); err != nil {
		t.Fatalf("strict after tofu recorded: %v", err)
	}
	os.WriteFile(tofuFile, []byte(knownhosts.Line([]string{knownhosts.Normalize(host)}, wrong)+"\n"), 0o600)
	cfg2.TrustOnFirstUse = true
	if _, err := newTestProvider(t, cfg2).pool.get(ctx, addrOf(host)); err == nil {
		t.Fatal("tofu accepted a key that differs from the recorded one")
	}
}

func addrOf(h string) string { a, _ := hostAddr(h, 22); return a }

func TestIntegrationConformanceNative(t *testing.T) {
	env := testenv.Require(t, "ssh")
	p := newTestProvider(t, testConfig(env, env.SSH.Hosts[0]))
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Remote:    "homelab",
		Package:   func(t *testing.T) *blueprint.Package { return testPackage(t) },
		LogMarker: testservice.Marker,
		Get: func(ctx context.Context, st provider.Status, p2 string) (int, error) {
			c, err := p.pool.get(ctx, p.hosts[0])
			if err != nil {
				return 0, err
			}
			return c.get(ctx, st.Address, p2)
		},
		Timeout: time.Minute,
	})
}

// TestIntegrationHostileInput deploys with names, env values and args that
// a shell would execute if any reached a command line unquoted; the marker
// file they would create must not appear on the host.
func TestIntegrationHostileInput(t *testing.T) {
	env := testenv.Require(t, "ssh")
	cfg := testConfig(env, env.SSH.Hosts[0])
	self, _ := os.Executable()
	marker := "/tmp/bpm-ssh-hostile-" + randHex(6)
	payloads := []string{
		"'; touch " + marker + "; '",
		"\"; touch " + marker + "; \"",
		"$(touch " + marker + ")",
		"`touch " + marker + "`",
		"x\ntouch " + marker + "\n",
		"; touch " + marker,
	}
	p := newTestProvider(t, cfg)
	p.opts.Executable = func(context.Context, *blueprint.Package, Platform) (string, []string, error) {
		return self, payloads, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var kv []string
	for i, s := range payloads {
		kv = append(kv, fmt.Sprintf("HOSTILE_%d=%s", i, s))
	}
	pkg := testPackage(t, kv...)
	pkg.Manifest.Name = payloads[0]
	req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "homelab", BlueprintID: 1, ServiceID: 2, Package: pkg, Env: pkg.Manifest.Env}
	h, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ref := provider.Ref{InstanceID: req.InstanceID, Handle: h}
	defer p.Terminate(context.Background(), ref)
	var st provider.Status
	for st.State != provider.StateRunning {
		st, err = p.Status(ctx, ref)
		if err != nil || ctx.Err() != nil {
			t.Fatalf("status %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A hostile instance id is refused before anything runs.
	if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: "bp-x;touch " + marker, Package: pkg}); err == nil {
		t.Error("hostile instance id accepted")
	}
	var logs bytes.Buffer
	if err := p.Logs(ctx, ref, provider.LogOptions{}, &logs); err != nil {
		t.Fatal(err)
	}
	c, _ := p.pool.get(ctx, p.hosts[0])
	// The env reached the service byte for byte.
	spec, err := c.readFile(path.Join(p.instancesDir(c), req.InstanceID, "spec.json"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := c.sftp.Stat(path.Join(p.instancesDir(c), req.InstanceID, "spec.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("spec.json mode %v, want 0600", fi.Mode().Perm())
	}
	if !bytes.Contains(spec, []byte(`touch `+marker)) {
		t.Errorf("spec.json lacks the env values")
	}
	if _, err := c.sftp.Stat(marker); err == nil {
		t.Fatalf("marker %s exists: a hostile string was executed", marker)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("marker %s exists locally", marker)
	}
}

// TestIntegrationSystemdDetection: the test hosts have systemctl installed
// but systemd is not PID 1, which is what detection must see (it must not
// assume from the binary), once per connection, and a deploy reports it.
func TestIntegrationSystemdDetection(t *testing.T) {
	env := testenv.Require(t, "ssh")
	ctx := context.Background()
	p := newTestProvider(t, testConfig(env, env.SSH.Hosts[0]))
	c, err := p.pool.get(ctx, p.hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.sftp.Stat("/run/systemd/system"); err == nil {
		// CI must not pass by skipping (as testenv.Require).
		if os.Getenv("CI") == "true" {
			t.Fatal("this test host runs systemd; the test expects one that does not (the test environment's hosts share this machine's /run)")
		}
		t.Skip("this test host runs systemd; the test expects one that does not")
	}
	has, fresh, err := c.hasSystemd(ctx)
	if err != nil || has || !fresh {
		t.Fatalf("first detection: has %v, fresh %v, err %v; want false, true, nil", has, fresh, err)
	}
	if has, fresh, err := c.hasSystemd(ctx); err != nil || has || fresh {
		t.Errorf("second detection: has %v, fresh %v, err %v; want the cached false", has, fresh, err)
	}
	var logs syncBuffer
	p.logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.systemdKnown = false
	p.noteSystemd(ctx, c)
	if !strings.Contains(logs.String(), "no systemd user manager") {
		t.Errorf("no log line reporting the detection; log:\n%s", logs.String())
	}
}
