package manager_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
	"github.com/bpm-project/bpm/internal/supervisor/testservice/bridgeservice"
)

// The test binary doubles as the supervisor and the service when
// re-executed, so every process in these tests is real.
func TestMain(m *testing.M) {
	if os.Getenv("BPM_TEST_SUPERVISOR") == "1" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if bridgeservice.Main() {
		return
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}

// fixture is a manager on a real socket in a short temp dir.
type fixture struct {
	t      *testing.T
	root   string
	cfg    *config.Config
	m      *manager.Manager
	client *api.Client
	stop   func()
	// override tweaks the local provider of the next start.
	override func(*local.Options)
	// keystore is passed as Options.Keystore (nil: no keystore).
	keystore func() (manager.Keystore, error)
}

func newFixture(t *testing.T) *fixture { t.Helper(); return newFixtureConfig(t, "") }

// newFixtureConfig is newFixture with more config text after [manager]
// (a [hub] section, [remote.NAME] sections).
func newFixtureConfig(t *testing.T, extra string) *fixture {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: t.TempDir is too deep.
	root, err := os.MkdirTemp("", "bpm-mgr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q
%s

# A free port each: managers of parallel tests must not clash.
[proxy]
listen = "127.0.0.1:0"
`, filepath.Join(root, "data"), filepath.Join(root, "run"), extra)), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, root: root, cfg: cfg}
}

func localTestOptions(o *local.Options) {
	o.SupervisorCommand = []string{os.Args[0], "supervise"}
	o.SupervisorEnv = []string{"BPM_TEST_SUPERVISOR=1"}
	o.GracePeriod = 2 * time.Second
	o.Executable = local.StaticExecutable(os.Args[0])
}

// start builds a manager, reconciles and serves it; stop (also run at
// cleanup) shuts it down without terminating instances, as a real manager
// shutdown does.
func (f *fixture) start() {
	f.t.Helper()
	f.startClocked(nil)
}

// startClocked is start with the cost clock, when given, set before
// Reconcile, which is where a restarted manager settles the meter.
func (f *fixture) startClocked(clock *simClock) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := manager.New(ctx, manager.Options{
		Config:         f.cfg,
		HealthInterval: 100 * time.Millisecond,
		Keystore:       f.keystore,
		LocalOverride: func(o *local.Options) {
			localTestOptions(o)
			if f.override != nil {
				f.override(o)
			}
		},
	})
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	if clock != nil {
		m.SetCostClock(clock.now, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond})
	}
	if err := m.ListenProxy(ctx); err != nil {
		cancel()
		m.Close()
		f.t.Fatal(err)
	}
	if err := m.Reconcile(ctx); err != nil {
		f.t.Logf("reconcile: %v", err)
	}
	l, err := manager.Listen(ctx, f.cfg.Manager.Socket)
	if err != nil {
		cancel()
		m.Close()
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Serve(ctx, l)
		m.WaitAlerts()
		m.Close()
	}()
	f.m = m
	f.client = api.NewClient(f.cfg.Manager.Socket)
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	f.t.Cleanup(f.stop)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writePackage writes a package whose service is the re-executed test
// binary in the given testservice mode, on a port of its own.
func (f *fixture) writePackage(mode string) (dir string, port int) {
	f.t.Helper()
	port = freePort(f.t)
	dir, err := os.MkdirTemp(f.root, "pkg-")
	if err != nil {
		f.t.Fatal(err)
	}
	manifest := fmt.Sprintf(`
name = "svc"
version = "1.0.0"
blueprint_id = 4

# The test swaps in its own binary (LocalOverride), so the source is only
# here to make the manifest valid.
[[sources]]
kind = "container"
image = "example.org/svc:1.0.0"

[[ports]]
name = "http"
port = %d

[env]
%s = %q
%s = "%d"

[health]
http = "/healthz"
interval = "1s"
timeout = "500ms"
`, port, testservice.EnvMode, mode, testservice.EnvPort, port)
	if err := os.WriteFile(filepath.Join(dir, "blueprint.toml"), []byte(manifest), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return dir, port
}

// terminateAll is registered first by tests that deploy, so it runs after
// the manager has stopped and no process outlives a test, failed or not:
// it terminates whatever the local provider's target still runs.
func (f *fixture) terminateAll() {
	f.t.Cleanup(func() {
		o := local.Options{DataDir: filepath.Join(f.cfg.Manager.DataDir, "local")}
		localTestOptions(&o)
		lp, err := local.New(o)
		if err != nil {
			f.t.Errorf("cleanup: %v", err)
			return
		}
		ctx := context.Background()
		owned, _ := lp.ListOwned(ctx)
		for _, in := range owned {
			if err := lp.Terminate(ctx, provider.Ref{InstanceID: in.InstanceID, Handle: in.Handle}); err != nil {
				f.t.Errorf("cleanup: terminate %s: %v", in.InstanceID, err)
			}
		}
	})
}

func waitState(t *testing.T, c *api.Client, id, want string) api.InstanceDetail {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var d api.InstanceDetail
	for {
		var err error
		d, err = c.Status(ctx, id)
		if err != nil {
			t.Fatalf("status %s: %v", id, err)
		}
		if d.State == want {
			return d
		}
		select {
		case <-ctx.Done():
			t.Fatalf("instance %s: state %s (%s), want %s", id, d.State, d.Message, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
