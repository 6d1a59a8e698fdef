package local_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

func testOptions(dataDir string) local.Options {
	return local.Options{
		DataDir:           dataDir,
		SupervisorCommand: []string{os.Args[0], "supervise"},
		SupervisorEnv:     []string{"BPM_TEST_SUPERVISOR=1"},
		GracePeriod:       2 * time.Second,
		Restart: supervisor.Restart{
			InitialBackoff: supervisor.Duration(20 * time.Millisecond),
			MaxBackoff:     supervisor.Duration(200 * time.Millisecond),
		},
		Executable: local.StaticExecutable(os.Args[0]),
	}
}

func newProvider(t *testing.T, dataDir string, mod func(*local.Options)) *local.Provider {
	t.Helper()
	opts := testOptions(dataDir)
	if mod != nil {
		mod(&opts)
	}
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort asks the kernel for a port that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testPackage is a blueprint whose service is this test binary in mode.
func testPackage(t *testing.T, mode string, env ...string) *blueprint.Package {
	port := freePort(t)
	m := blueprint.Manifest{
		Name:    "bpm-test",
		Version: "0.0.1",
		Ports:   []blueprint.Port{{Name: "http", Port: port, Protocol: "tcp"}},
		Health:  &blueprint.Health{HTTP: "/healthz", Timeout: blueprint.Duration{Duration: time.Second}},
		Env: map[string]string{
			testservice.EnvMode: mode,
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

func request(pkg *blueprint.Package) provider.DeployRequest {
	env := map[string]string{"BLUEPRINT_ID": "3", "SERVICE_ID": "7", "PROTOCOL": "tangle"}
	for k, v := range pkg.Manifest.Env {
		env[k] = v
	}
	return provider.DeployRequest{
		InstanceID:  providertest.NewInstanceID(),
		Remote:      "local",
		BlueprintID: 3,
		ServiceID:   7,
		Package:     pkg,
		Env:         env,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// deploy deploys and always terminates in cleanup, even on failure.
func deploy(t *testing.T, ctx context.Context, p *local.Provider, req provider.DeployRequest) provider.Ref {
	t.Helper()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Terminate(cctx, provider.Ref{InstanceID: req.InstanceID}); err != nil {
			t.Errorf("cleanup terminate: %v", err)
		}
	})
	h, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	return provider.Ref{InstanceID: req.InstanceID, Remote: "local", Handle: h}
}

// waitFor polls Status until ok or ctx ends.
func waitFor(t *testing.T, ctx context.Context, p *local.Provider, ref provider.Ref, ok func(provider.Status) bool) provider.Status {
	t.Helper()
	var last provider.Status
	var lastErr error
	for {
		last, lastErr = p.Status(ctx, ref)
		if lastErr == nil && ok(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status never matched; last %+v err %v", last, lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func isRunning(s provider.Status) bool { return s.State == provider.StateRunning }

func TestConformance(t *testing.T) {
	p := newProvider(t, t.TempDir(), nil)
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Package:   func(t *testing.T) *blueprint.Package { return testPackage(t, "http") },
		LogMarker: testservice.Marker,
		NoTunnel:  true,
		Timeout:   time.Minute,
	})
}

func TestInfo(t *testing.T) {
	info := local.Info()
	if info.Type != "local" || info.Remote || info.NewConfig != nil {
		t.Fatalf("Info = %+v", info)
	}
	p, err := info.New(context.Background(), provider.Env{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type() != "local" {
		t.Fatalf("Type = %q", p.Type())
	}
	// Without a resolver a deploy fails cleanly, saying why.
	_, err = p.Deploy(context.Background(), request(testPackage(t, "http")))
	if err == nil || !strings.Contains(err.Error(), "no executable resolver") {
		t.Fatalf("Deploy without resolver: %v", err)
	}
	if _, err := local.New(local.Options{}); err == nil {
		t.Fatal("New without DataDir succeeded")
	}
}

// syncBuffer is a goroutine-safe log sink.
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

func TestEnvironment(t *testing.T) {
	ctx := testCtx(t)
	t.Setenv("BPM_TEST_SENTINEL", "must-not-leak")
	const secret = "s3cr3t-value-9f1c"
	var logs syncBuffer
	dataDir := t.TempDir()
	runtimeDir := t.TempDir()
	p := newProvider(t, dataDir, func(o *local.Options) {
		o.RuntimeDir = runtimeDir
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	req := request(testPackage(t, "http"))
	req.Env["API_TOKEN"] = secret
	ref := deploy(t, ctx, p, req)
	st := waitFor(t, ctx, p, ref, isRunning)

	resp, err := http.Get("http://" + st.Address + "/env")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	err = json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	instDir := filepath.Join(dataDir, "instances", req.InstanceID)
	want := map[string]string{
		"BLUEPRINT_ID":       "3",
		"SERVICE_ID":         "7",
		"PROTOCOL":           "tangle",
		"API_TOKEN":          secret,
		"DATA_DIR":           filepath.Join(instDir, "data"),
		"BRIDGE_SOCKET_PATH": filepath.Join(runtimeDir, "svc-3-7", "svc-3-7.sock"),
		"PATH":               os.Getenv("PATH"),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("service env %s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["BPM_TEST_SENTINEL"]; ok {
		t.Error("the manager's environment leaked into the service")
	}
	if _, ok := env["BPM_TEST_SUPERVISOR"]; ok {
		t.Error("the supervisor's environment leaked into the service")
	}

	// The supervisor keeps only what it was given, not the manager's env.
	pid, _, err := supervisor.ReadPIDFile(instDir)
	if err != nil {
		t.Fatal(err)
	}
	senv, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(senv, []byte("BPM_TEST_SENTINEL")) {
		t.Error("the manager's environment leaked into the supervisor")
	}

	fi, err := os.Stat(filepath.Join(instDir, supervisor.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("spec.json mode %v, want 0600", fi.Mode().Perm())
	}
	for _, name := range []string{"supervisor.log", supervisor.StatusFile, "instance.json"} {
		b, _ := os.ReadFile(filepath.Join(instDir, name))
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s contains the secret", name)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("provider log contains the secret")
	}
}

// TestDefaultSignalDispositions checks that nothing the supervisor ignores
// leaks into the service: ignored dispositions survive exec. The service is
// a shell, not a Go program, because the Go runtime installs its own
// handlers and would hide the leak.
func TestDefaultSignalDispositions(t *testing.T) {
	ctx := testCtx(t)
	p := newProvider(t, t.TempDir(), func(o *local.Options) {
		o.Executable = local.StaticExecutable("/bin/sh", "-c", `grep '^SigIgn' /proc/$$/status; exec sleep 600`)
	})
	ref := deploy(t, ctx, p, request(testPackage(t, "none")))
	var out bytes.Buffer
	for !strings.Contains(out.String(), "SigIgn") {
		out.Reset()
		if err := p.Logs(ctx, ref, provider.LogOptions{}, &out); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the shell never printed its signal mask")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if mask := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out.String()), "SigIgn:")); strings.Trim(mask, "0") != "" {
		t.Fatalf("service starts with ignored signals: SigIgn %s", mask)
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	ctx := testCtx(t)
	p := newProvider(t, t.TempDir(), func(o *local.Options) {
		// Long enough that the instance spends most of its time in backoff.
		o.Restart.InitialBackoff = supervisor.Duration(200 * time.Millisecond)
		o.Restart.MaxBackoff = supervisor.Duration(time.Second)
	})
	ref := deploy(t, ctx, p, request(testPackage(t, "crash")))
	st := waitFor(t, ctx, p, ref, func(s provider.Status) bool {
		return s.State == provider.StateDegraded && s.Restarts >= 2
	})
	if !strings.Contains(st.Message, "exit status 1") {
		t.Fatalf("degraded message %q does not name the exit", st.Message)
	}
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx, ref)
	if err != nil || st.State != provider.StateTerminated {
		t.Fatalf("after terminate: %+v %v", st, err)
	}
}

func TestUnhealthyIsDegraded(t *testing.T) {
	ctx := testCtx(t)
	p := newProvider(t, t.TempDir(), nil)
	ref := deploy(t, ctx, p, request(testPackage(t, "http", testservice.EnvUnhealthy+"=1")))
	st := waitFor(t, ctx, p, ref, func(s provider.Status) bool {
		return s.State == provider.StateDegraded && strings.Contains(s.Message, "status 503")
	})
	if st.Restarts != 0 {
		t.Fatalf("unhealthy service was restarted: %+v", st)
	}
}

func waitPIDs(t *testing.T, ctx context.Context, path string) (leader, grandchild int) {
	t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil {
			if _, err := fmt.Sscan(string(b), &leader, &grandchild); err == nil {
				return leader, grandchild
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("service never wrote its pids")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestTerminateKillsGroupIgnoringSIGTERM(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	p := newProvider(t, dataDir, func(o *local.Options) { o.GracePeriod = 300 * time.Millisecond })
	pidFile := filepath.Join(t.TempDir(), "pids")
	req := request(testPackage(t, "ignore-term", testservice.EnvPIDFile+"="+pidFile))
	ref := deploy(t, ctx, p, req)
	leader, gc := waitPIDs(t, ctx, pidFile)
	ls, _ := supervisor.ProcessStartTime(leader)
	gs, _ := supervisor.ProcessStartTime(gc)
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	for supervisor.Alive(leader, ls) || supervisor.Alive(gc, gs) {
		select {
		case <-ctx.Done():
			t.Fatal("a process that ignored SIGTERM survived terminate")
		case <-time.After(20 * time.Millisecond):
		}
	}
	st, err := supervisor.ReadStatus(filepath.Join(dataDir, "instances", req.InstanceID))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != supervisor.StateStopped || !strings.Contains(st.LastError, "killed") {
		t.Fatalf("supervisor status %+v, want stopped after SIGKILL", st)
	}
}

func TestLogRotationCapsSize(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	const maxBytes, maxFiles = 64 << 10, 3
	p := newProvider(t, dataDir, func(o *local.Options) {
		o.Logs = supervisor.Logs{MaxBytes: maxBytes, MaxFiles: maxFiles}
	})
	req := request(testPackage(t, "spam", testservice.EnvSpamBytes+"=1048576"))
	ref := deploy(t, ctx, p, req)
	var out bytes.Buffer
	for !strings.Contains(out.String(), testservice.Marker) {
		out.Reset()
		if err := p.Logs(ctx, ref, provider.LogOptions{}, &out); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("spam never finished")
		case <-time.After(50 * time.Millisecond):
		}
	}
	files := supervisor.LogFiles(filepath.Join(dataDir, "instances", req.InstanceID))
	if len(files) != maxFiles {
		t.Fatalf("%d log files, want %d: %v", len(files), maxFiles, files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over the %d cap", f, fi.Size(), maxBytes)
		}
	}
	if out.Len() > maxBytes*maxFiles {
		t.Errorf("Logs returned %d bytes, over the total cap", out.Len())
	}
	// Whole lines, oldest first, none missing between the first kept and
	// the last.
	checkSpam(t, out.String())
	var tail bytes.Buffer
	if err := p.Logs(ctx, ref, provider.LogOptions{Tail: 3}, &tail); err != nil {
		t.Fatal(err)
	}
	tl := strings.Split(strings.TrimSuffix(tail.String(), "\n"), "\n")
	if len(tl) != 3 || !strings.Contains(tl[2], testservice.Marker) {
		t.Fatalf("Tail 3 = %q", tail.String())
	}
}

func TestLogsFollowAcrossRotation(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	p := newProvider(t, dataDir, func(o *local.Options) {
		o.Logs = supervisor.Logs{MaxBytes: 4 << 10, MaxFiles: 3}
	})
	// Output slow enough (200 lines/s, a 40-line file every 200ms, 1.5s in
	// all) that retention outlasts Follow's poll, yet the files rotate
	// several times while Follow reads them.
	req := request(testPackage(t, "spam", testservice.EnvSpamBytes+"=30000", testservice.EnvSpamPause+"=50ms"))
	ref := deploy(t, ctx, p, req)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- p.Logs(fctx, ref, provider.LogOptions{Follow: true}, &out) }()
	for !strings.Contains(out.String(), testservice.Marker) {
		select {
		case <-ctx.Done():
			t.Fatalf("Follow never reached the end; got %d bytes", len(out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	checkSpam(t, out.String())
}

// checkSpam checks that out is consecutive spam lines ending with the
// marker, and returns the number of the first one.
func checkSpam(t *testing.T, out string) int {
	t.Helper()
	lines := strings.SplitAfter(out, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], testservice.Marker) {
		t.Fatalf("output does not end with the marker: %d lines", len(lines))
	}
	first, err := strconv.Atoi(strings.Fields(lines[0])[0])
	if err != nil {
		t.Fatalf("first line %q is not a spam line", lines[0])
	}
	for i, l := range lines[:len(lines)-1] {
		if l != testservice.SpamLine(first+i) {
			t.Fatalf("line %d is %q, want spam line %d (lost, repeated or torn output)", i, l, first+i)
		}
	}
	return first
}

// TestReattachAfterManagerCrash deploys from a separate manager process,
// SIGKILLs it, and checks that a new provider on the same DataDir adopts the
// running instance without starting a second one.
func TestReattachAfterManagerCrash(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	req := request(testPackage(t, "http"))
	b, _ := json.Marshal(struct {
		DataDir string
		Request provider.DeployRequest
	}{dataDir, req})
	mgr := exec.Command(os.Args[0])
	mgr.Env = append(os.Environ(), "BPM_TEST_MANAGER=1", "BPM_TEST_MANAGER_REQ="+string(b))
	mgr.Stderr = os.Stderr
	stdout, err := mgr.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, dataDir, nil) // provider B
	t.Cleanup(func() {
		mgr.Process.Kill()
		mgr.Wait()
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Terminate(cctx, provider.Ref{InstanceID: req.InstanceID}); err != nil {
			t.Errorf("cleanup terminate: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "deployed ") {
		t.Fatalf("manager said %q, %v", line, err)
	}
	// The crash.
	if err := mgr.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	mgr.Wait()

	instDir := filepath.Join(dataDir, "instances", req.InstanceID)
	spid, sstart, err := supervisor.ReadPIDFile(instDir)
	if err != nil {
		t.Fatal(err)
	}
	owned, err := p.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 1 || owned[0].InstanceID != req.InstanceID {
		t.Fatalf("ListOwned after crash = %+v", owned)
	}
	ref := provider.Ref{InstanceID: req.InstanceID, Remote: "local", Handle: owned[0].Handle}
	st := waitFor(t, ctx, p, ref, isRunning)
	before, _ := supervisor.ReadStatus(instDir)

	// A redeploy by the new manager adopts, it does not duplicate.
	if _, err := p.Deploy(ctx, req); err != nil {
		t.Fatal(err)
	}
	after, _ := supervisor.ReadStatus(instDir)
	pid2, start2, _ := supervisor.ReadPIDFile(instDir)
	if pid2 != spid || start2 != sstart || after.ChildPID != before.ChildPID || after.Restarts != 0 {
		t.Fatalf("redeploy replaced the instance: supervisor %d->%d, child %d->%d", spid, pid2, before.ChildPID, after.ChildPID)
	}
	if resp, err := http.Get("http://" + st.Address + "/healthz"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if supervisor.Alive(spid, sstart) {
		t.Fatal("supervisor alive after terminate")
	}
	if st, err := p.Status(ctx, ref); err != nil || st.State != provider.StateTerminated {
		t.Fatalf("status after terminate %+v %v", st, err)
	}
}

// TestPIDReuseIsNotMistaken plants an instance whose recorded supervisor and
// service pids now belong to an unrelated process (as after a reboot): it
// must be reported dead, not listed, and that process must not be signalled.
func TestPIDReuseIsNotMistaken(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	p := newProvider(t, dataDir, nil)

	other := exec.Command(os.Args[0])
	other.Env = []string{testservice.EnvMode + "=sleep-ignore"}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	pid := other.Process.Pid
	start, err := supervisor.ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}

	id := "bp-reused"
	dir := filepath.Join(dataDir, "instances", id)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, supervisor.PIDFile), fmt.Appendf(nil, "%d %d\n", pid, start+12345), 0o644)
	supervisor.WriteStatus(dir, supervisor.Status{
		SupervisorPID: pid, SupervisorStart: start + 12345, State: supervisor.StateRunning,
		ChildPID: pid, ChildStartTicks: start + 999,
	})

	ref := provider.Ref{InstanceID: id, Remote: "local"}
	st, err := p.Status(ctx, ref)
	if err != nil || st.State != provider.StateFailed {
		t.Fatalf("Status = %+v, %v; want failed", st, err)
	}
	owned, _ := p.ListOwned(ctx)
	if len(owned) != 0 {
		t.Fatalf("ListOwned = %+v, want nothing", owned)
	}
	// Handle only (pid file gone): right pid, wrong start time.
	os.Remove(filepath.Join(dir, supervisor.PIDFile))
	hb, _ := json.Marshal(map[string]any{"dir": dir, "supervisor_pid": pid, "supervisor_start": start + 1})
	ref.Handle = hb
	if st, err := p.Status(ctx, ref); err != nil || st.State != provider.StateFailed {
		t.Fatalf("Status by handle = %+v, %v; want failed", st, err)
	}
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if !supervisor.Alive(pid, start) {
		t.Fatal("terminate signalled an unrelated process that reused the pid")
	}
	if st, _ := p.Status(ctx, ref); st.State != provider.StateTerminated {
		t.Fatalf("after terminate: %+v", st)
	}
}

func TestFailedDeployLeavesNothing(t *testing.T) {
	ctx := testCtx(t)
	dataDir := t.TempDir()
	p := newProvider(t, dataDir, func(o *local.Options) {
		o.Executable = local.StaticExecutable("/nonexistent/bpm-service")
	})
	req := request(testPackage(t, "http"))
	_, err := p.Deploy(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "no such file") || !strings.HasPrefix(err.Error(), "local: deploy "+req.InstanceID) {
		t.Fatalf("Deploy error = %v", err)
	}
	dir := filepath.Join(dataDir, "instances", req.InstanceID)
	if pid, start, err := supervisor.ReadPIDFile(dir); err == nil && supervisor.Alive(pid, start) {
		t.Fatal("supervisor left running after a failed deploy")
	}
	if owned, _ := p.ListOwned(ctx); len(owned) != 0 {
		t.Fatalf("ListOwned = %+v", owned)
	}
	st, err := p.Status(ctx, provider.Ref{InstanceID: req.InstanceID})
	if err != nil || st.State != provider.StateFailed || !strings.Contains(st.Message, "no such file") {
		t.Fatalf("Status = %+v, %v", st, err)
	}

	// A deploy whose wait is cut short stops the supervisor it started.
	p2 := newProvider(t, dataDir, func(o *local.Options) {
		o.SupervisorEnv = []string{"BPM_TEST_SUPERVISOR=slow"}
		o.GracePeriod = 100 * time.Millisecond
	})
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req2 := request(testPackage(t, "http"))
	if _, err := p2.Deploy(cctx, req2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deploy with a short deadline: %v", err)
	}
	dir2 := filepath.Join(dataDir, "instances", req2.InstanceID)
	pid, start, err := supervisor.ReadPIDFile(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if supervisor.Alive(pid, start) {
		t.Fatal("supervisor left running after a timed-out deploy")
	}
}

func TestBadInput(t *testing.T) {
	ctx := testCtx(t)
	p := newProvider(t, t.TempDir(), nil)
	for _, id := range []string{"", "../escape", "a/b", ".hidden"} {
		if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: id, Package: testPackage(t, "http")}); err == nil {
			t.Errorf("Deploy(%q) succeeded", id)
		}
		if _, err := p.Status(ctx, provider.Ref{InstanceID: id}); err == nil || errors.Is(err, provider.ErrNotFound) {
			t.Errorf("Status(%q) = %v, want an invalid-id error", id, err)
		}
	}
	req := request(testPackage(t, "http"))
	req.Env["BAD=KEY"] = "x"
	if _, err := p.Deploy(ctx, req); err == nil || !strings.Contains(err.Error(), `invalid variable "BAD=KEY"`) {
		t.Fatalf("Deploy with bad env key: %v", err)
	}
	if _, err := p.EstablishTunnel(ctx, provider.TunnelSpec{}); !errors.Is(err, provider.ErrUnsupported) {
		t.Fatalf("EstablishTunnel: %v", err)
	}
	_ = io.Discard
}

// BenchmarkDeploy measures deploy initiation: the call until the service
// process exists (the supervisor started and exec'd it), not the service's
// own start-up. Terminate is excluded from the timing.
func BenchmarkDeploy(b *testing.B) {
	dataDir := b.TempDir()
	opts := testOptions(dataDir)
	opts.GracePeriod = 50 * time.Millisecond // the service ignores SIGTERM
	p, err := local.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	pidDir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		req := provider.DeployRequest{
			InstanceID: fmt.Sprintf("bp-bench%d", i),
			Package:    &blueprint.Package{Dir: pidDir},
			Env:        map[string]string{testservice.EnvMode: "sleep-ignore"},
		}
		if _, err := p.Deploy(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := p.Terminate(ctx, provider.Ref{InstanceID: req.InstanceID}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// A second instance wanting a port the first holds is refused up front
// rather than crash-looping behind the first one's health check.
func TestDeployRefusesPortInUse(t *testing.T) {
	ctx := testCtx(t)
	p := newProvider(t, t.TempDir(), nil)
	pkg := testPackage(t, "http")
	first := request(pkg)
	first.InstanceID = providertest.NewInstanceID()
	deploy(t, ctx, p, first)
	second := request(pkg)
	second.InstanceID = providertest.NewInstanceID()
	_, err := p.Deploy(ctx, second)
	if !errors.Is(err, provider.ErrExists) || !strings.Contains(err.Error(), "already used by instance "+first.InstanceID) {
		t.Fatalf("second deploy on a busy port: %v", err)
	}
	owned, _ := p.ListOwned(ctx)
	if len(owned) != 1 {
		t.Fatalf("refused deploy left processes: %+v", owned)
	}
}
