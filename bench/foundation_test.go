package bench

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// BenchmarkDeploy measures deploy initiation, the API call until the service
// process exists, against a bare fork/exec of the same service binary.
//
// The service is testservice's http mode on a port of its own per deploy:
// it is what a blueprint looks like to bpm (a port and an HTTP health check,
// so the status refresh at the end of a deploy really probes it), and it
// exits on SIGTERM at once. A mode that ignores SIGTERM would make every
// terminate wait out the grace period, and a mode without a port would skip
// the health probe a real deploy pays for.
func BenchmarkDeploy(b *testing.B) {
	b.Run("baseline-exec", func(b *testing.B) {
		var lat latencies
		for b.Loop() {
			b.StopTimer()
			cmd := exec.Command(os.Args[0])
			cmd.Env = serviceEnv(freePort(b))
			// The supervisor starts services in their own process group;
			// the baseline pays for the same attribute.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			b.StartTimer()

			t0 := time.Now()
			// Start returns once execve succeeded in the child: the
			// service process exists, which is where bpm's deploy stops.
			err := cmd.Start()
			lat.add(time.Since(t0))

			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			b.StartTimer()
		}
		lat.report(b)
	})

	b.Run("bpm-api", func(b *testing.B) {
		env := startManager(b, 0, nil)
		ctx := context.Background()
		// Leave nothing running if a deploy fails half-way.
		b.Cleanup(func() { env.terminateAll(b) })
		var lat latencies
		i := 0
		for b.Loop() {
			b.StopTimer()
			pkg := env.writePackage(b, i, freePort(b))
			i++
			b.StartTimer()

			t0 := time.Now()
			inst, err := env.client.Deploy(ctx, api.DeployRequest{PackagePath: pkg})
			lat.add(time.Since(t0))

			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if inst.State == string(provider.StateFailed) {
				b.Fatalf("deploy %s: %s", inst.ID, inst.Message)
			}
			if _, err := env.client.Terminate(ctx, inst.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		lat.report(b)
	})
}

// listN is the size of the state BenchmarkList10k lists.
const listN = 10000

// BenchmarkList10k lists 10,000 live instances three ways over the same
// database: the driver alone (a raw SELECT of the same columns), the state
// package, and the manager's API as `bpm list -o json` calls it.
func BenchmarkList10k(b *testing.B) {
	// The rows are records without processes behind them; a health pass
	// would ask the local provider about each and mark them failed, and
	// would compete for the CPU while the lists are timed.
	// The rows are written before the manager starts, as a manager finds
	// them after a restart: it loads its instance table once at start.
	env := startManager(b, time.Hour, func(dbPath string) { seedInstances(b, dbPath, listN) })
	ctx := context.Background()

	b.Run("baseline-sql", func(b *testing.B) {
		db, err := sql.Open("sqlite", "file:"+env.dbPath+"?_pragma=query_only(1)")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		// The same columns, filter and order as state.ListInstances, scanned
		// into plain destinations: what the driver costs by itself.
		const q = `SELECT id, remote, provider_type, blueprint_name, blueprint_id, service_id,
			package_path, state, message, handle, address, created_at, updated_at, terminated_at
			FROM instances WHERE state <> 'terminated' ORDER BY created_at, id`
		var lat latencies
		for b.Loop() {
			t0 := time.Now()
			n, err := rawList(ctx, db, q)
			lat.add(time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if n != listN {
				b.Fatalf("listed %d rows, want %d", n, listN)
			}
		}
		lat.report(b)
	})

	b.Run("store", func(b *testing.B) {
		st, err := state.Open(ctx, env.dbPath)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		var lat latencies
		for b.Loop() {
			t0 := time.Now()
			list, err := st.ListInstances(ctx, state.Filter{})
			lat.add(time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if len(list) != listN {
				b.Fatalf("listed %d, want %d", len(list), listN)
			}
		}
		lat.report(b)
	})

	b.Run("bpm-api", func(b *testing.B) {
		var lat latencies
		for b.Loop() {
			t0 := time.Now()
			list, err := env.client.List(ctx, api.ListOptions{})
			lat.add(time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if len(list) != listN {
				b.Fatalf("listed %d, want %d", len(list), listN)
			}
		}
		lat.report(b)
	})
}

func rawList(ctx context.Context, db *sql.DB, q string) (int, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		id, remote, typ, name, pkg, st, msg, addr string
		bid, sid, created, updated                int64
		handle                                    sql.RawBytes
		terminated                                sql.NullInt64
		n                                         int
	)
	for rows.Next() {
		if err := rows.Scan(&id, &remote, &typ, &name, &bid, &sid, &pkg, &st, &msg,
			&handle, &addr, &created, &updated, &terminated); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// seedInstances records n running local instances shaped like real ones
// (a local provider handle, an address, distinct creation times). It goes
// through state.CreateInstance, one transaction each, so the rows and their
// events are exactly what a manager would have written.
func seedInstances(b *testing.B, dbPath string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := state.Open(ctx, dbPath)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	base := time.Now().Add(-time.Duration(n) * time.Second).UTC()
	for i := range n {
		id := fmt.Sprintf("bp-%010d", i)
		at := base.Add(time.Duration(i) * time.Second)
		in := state.Instance{
			ID:            id,
			Remote:        manager.LocalRemote,
			ProviderType:  local.Type,
			BlueprintName: "echo",
			BlueprintID:   1,
			ServiceID:     uint64(i + 1),
			PackagePath:   "/home/operator/blueprints/echo",
			State:         provider.StateRunning,
			Handle: provider.Handle(fmt.Sprintf(
				`{"dir":"/home/operator/.local/share/bpm/local/instances/%s","supervisor_pid":%d,"supervisor_start":%d}`,
				id, 100000+i, 1234567+i)),
			Address:   net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+i%40000)),
			CreatedAt: at,
			UpdatedAt: at,
		}
		if err := st.CreateInstance(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleRSS reports the resident memory of an idle `bpm manager`
// beside that of a trivial Go program, both built from source in this run.
// The figures come from one measurement; b.N only repeats an empty loop.
func BenchmarkIdleRSS(b *testing.B) {
	r := measureIdleRSS(b)
	b.Run("baseline-go", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(r.baseline.rss, "rss-MiB")
		b.ReportMetric(r.baseline.hwm, "peak-MiB")
	})
	b.Run("bpm-manager", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(r.manager.rss, "rss-MiB")
		b.ReportMetric(r.manager.hwm, "peak-MiB")
		b.ReportMetric(r.manager.anon, "anon-MiB")
	})
}

// idleFor is how long both processes idle before their memory is read: past
// the manager's first health tick (every 5s), so the figure includes what
// the health loop keeps alive.
const idleFor = 6 * time.Second

type memInfo struct{ rss, hwm, anon float64 } // MiB

type rssResult struct{ baseline, manager memInfo }

func measureIdleRSS(b *testing.B) rssResult {
	b.Helper()
	root := shortTempDir(b)
	bin := filepath.Join(root, "bin")
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"github.com/bpm-project/bpm/cmd/bpm", "github.com/bpm-project/bpm/bench/cmd/idle")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	// The baseline: wait for its "ready" line, then leave it idle.
	idle := exec.Command(filepath.Join(bin, "idle"))
	stdout, err := idle.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := idle.Start(); err != nil {
		b.Fatal(err)
	}
	defer stopProcess(idle)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("idle program: read ready line: %q, %v", line, err)
	}

	// The manager, as an operator starts it, with its own config dir.
	cfgDir := filepath.Join(root, "cfg")
	must(b, os.MkdirAll(cfgDir, 0o700))
	socket := filepath.Join(root, "run", "manager.sock")
	must(b, os.WriteFile(filepath.Join(cfgDir, config.FileName), []byte(fmt.Sprintf(
		"[manager]\ndata_dir = %q\nruntime_dir = %q\n",
		filepath.Join(root, "data"), filepath.Join(root, "run"))), 0o600))
	logf, err := os.Create(filepath.Join(root, "manager.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	mgr := exec.Command(filepath.Join(bin, "bpm"), "manager")
	mgr.Env = append(os.Environ(), "BPM_CONFIG_DIR="+cfgDir)
	mgr.Stdout, mgr.Stderr = logf, logf
	if err := mgr.Start(); err != nil {
		b.Fatal(err)
	}
	defer stopProcess(mgr)
	// Ready means the API answers; one list leaves the manager in the state
	// an operator's first `bpm list` would.
	c := api.NewClient(socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.List(ctx, api.ListOptions{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			b.Fatalf("manager did not answer on %s: %v\n%s", socket, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}

	time.Sleep(idleFor)
	var r rssResult
	if r.baseline, err = readMem(idle.Process.Pid); err != nil {
		b.Fatal(err)
	}
	if r.manager, err = readMem(mgr.Process.Pid); err != nil {
		b.Fatal(err)
	}
	return r
}

// readMem reads VmRSS (resident now), VmHWM (the peak) and RssAnon (the
// part that is the process's own memory rather than pages of its binary
// and libraries, which the kernel shares and can drop) of a process.
func readMem(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	var m memInfo
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == "RssAnon" {
			if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
				m.anon = kb / 1024
			}
			continue
		}
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			m.rss = kb / 1024
		} else {
			m.hwm = kb / 1024
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, err
	}
	if found != 2 {
		return memInfo{}, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return m, nil
}

// stopProcess asks a process to stop and reaps it, killing it when it does
// not stop within a few seconds.
func stopProcess(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// managerEnv is an in-process manager serving its real unix socket, with
// the local provider's supervisor and service played by this test binary.
type managerEnv struct {
	root   string
	dbPath string
	client *api.Client
}

// startManager starts a manager in a fresh short temp dir and stops it at
// the end of the benchmark. healthInterval 0 keeps the manager's default.
// seed, when given, fills the state database before the manager opens it.
func startManager(b *testing.B, healthInterval time.Duration, seed func(dbPath string)) *managerEnv {
	b.Helper()
	root := shortTempDir(b)
	dataDir, runDir := filepath.Join(root, "data"), filepath.Join(root, "run")
	doc := fmt.Sprintf("[manager]\ndata_dir = %q\nruntime_dir = %q\n", dataDir, runDir)
	// No environment and a fixed home: the benchmark must not pick up the
	// operator's XDG directories or secrets.
	cfg, err := config.Parse([]byte(doc), "bench.toml", config.LoadOptions{
		Getenv: func(string) (string, bool) { return "", false },
		Home:   root,
	})
	if err != nil {
		b.Fatal(err)
	}
	if seed != nil {
		seed(filepath.Join(dataDir, "state.db"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := manager.New(ctx, manager.Options{
		Config: cfg,
		// The real manager formats every log line; discarding the text
		// keeps that cost in the figures without filling the output.
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealthInterval: healthInterval,
		LocalOverride: func(o *local.Options) {
			o.SupervisorCommand = []string{os.Args[0], "supervise"}
			o.SupervisorEnv = []string{"BPM_TEST_SUPERVISOR=1"}
			o.Executable = local.StaticExecutable(os.Args[0])
		},
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	if err := m.Reconcile(ctx); err != nil {
		b.Logf("reconcile: %v", err)
	}
	l, err := manager.Listen(ctx, cfg.Manager.Socket)
	if err != nil {
		m.Close()
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, l) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Logf("serve: %v", err)
		}
		m.Close()
	})
	return &managerEnv{
		root:   root,
		dbPath: filepath.Join(dataDir, "state.db"),
		client: api.NewClient(cfg.Manager.Socket),
	}
}

// writePackage writes blueprint i: testservice's http mode on port, with an
// HTTP health check like a real blueprint's. Its source is never built: the
// manager's executable resolver is overridden to run this test binary.
func (e *managerEnv) writePackage(b *testing.B, i, port int) string {
	b.Helper()
	dir := filepath.Join(e.root, "pkg", strconv.Itoa(i))
	must(b, os.MkdirAll(dir, 0o755))
	manifest := fmt.Sprintf(`name = "bench"
version = "0.1.0"
blueprint_id = 1

[[sources]]
kind = "testing"
dir = "."

[[ports]]
name = "http"
port = %d

[env]
%s = "http"
%s = "%d"

[health]
http = "/healthz"
timeout = "1s"
`, port, testservice.EnvMode, testservice.EnvPort, port)
	must(b, os.WriteFile(filepath.Join(dir, "blueprint.toml"), []byte(manifest), 0o644))
	return dir
}

// terminateAll stops every live instance, so a failed benchmark leaves no
// supervisor or service behind.
func (e *managerEnv) terminateAll(b *testing.B) {
	ctx := context.Background()
	list, err := e.client.List(ctx, api.ListOptions{})
	if err != nil {
		b.Logf("cleanup: list: %v", err)
		return
	}
	for _, in := range list {
		if _, err := e.client.Terminate(ctx, in.ID); err != nil {
			b.Logf("cleanup: terminate %s: %v", in.ID, err)
		}
	}
}

func serviceEnv(port int) []string {
	return []string{
		testservice.EnvMode + "=http",
		testservice.EnvPort + "=" + strconv.Itoa(port),
	}
}

// shortTempDir is a temp dir under /tmp rather than b.TempDir, whose long
// names would push unix socket paths past their 108-byte limit.
func shortTempDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "bpmb-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freePort asks the kernel for a port that is free right now.
func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// latencies collects one duration per operation, for percentiles: the mean
// that ns/op reports hides the slow tail a user feels.
type latencies struct{ d []time.Duration }

func (l *latencies) add(d time.Duration) { l.d = append(l.d, d) }

// report adds p50-ms and p99-ms to the benchmark's result line.
func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(ms(percentile(l.d, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(l.d, 99)), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
