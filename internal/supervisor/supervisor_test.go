package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// TestMain lets the test binary play two more roles when re-executed: the
// supervisor itself (BPM_TEST_SUPERVISOR=1) and the supervised service
// (BPM_TEST_SERVICE=mode).
func TestMain(m *testing.M) {
	if os.Getenv("BPM_TEST_SUPERVISOR") == "1" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}

type running struct {
	cmd  *exec.Cmd
	done chan struct{}
	dir  string
}

// startSupervisor writes spec into a fresh dir and starts a supervisor on it
// the way the local provider does (own session, output to a file).
func startSupervisor(t *testing.T, spec supervisor.Spec) *running {
	t.Helper()
	dir := t.TempDir()
	if err := supervisor.WriteSpec(dir, spec); err != nil {
		t.Fatal(err)
	}
	return startOn(t, dir)
}

func startOn(t *testing.T, dir string) *running {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0], "supervise", "--dir", dir)
	cmd.Env = []string{"BPM_TEST_SUPERVISOR=1", "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, done: make(chan struct{}), dir: dir}
	go func() { cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		// Kill by recorded pid only: the supervisor, then whatever service
		// it still had.
		st, _ := supervisor.ReadStatus(dir)
		cmd.Process.Kill()
		<-r.done
		if st.ChildPID > 0 && supervisor.Alive(st.ChildPID, st.ChildStartTicks) {
			supervisor.SignalGroup(st.ChildPID, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "supervisor.log"))
			t.Logf("supervisor.log:\n%s", b)
		}
	})
	return r
}

func (r *running) waitExit(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-ctx.Done():
		t.Fatalf("supervisor did not exit: %v", ctx.Err())
		return -1
	}
}

func waitStatus(t *testing.T, ctx context.Context, dir string, ok func(supervisor.Status) bool) supervisor.Status {
	t.Helper()
	var last supervisor.Status
	for {
		st, err := supervisor.ReadStatus(dir)
		if err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status never matched; last %+v", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func spec(mode string, extraEnv ...string) supervisor.Spec {
	return supervisor.Spec{
		Path:        os.Args[0],
		Env:         append([]string{testservice.EnvMode + "=" + mode}, extraEnv...),
		GracePeriod: supervisor.Duration(300 * time.Millisecond),
		Restart: supervisor.Restart{
			InitialBackoff: supervisor.Duration(20 * time.Millisecond),
			MaxBackoff:     supervisor.Duration(200 * time.Millisecond),
		},
	}
}

func TestCrashIsRestartedWithBackoff(t *testing.T) {
	ctx := testCtx(t)
	r := startSupervisor(t, spec("crash"))
	st := waitStatus(t, ctx, r.dir, func(s supervisor.Status) bool { return s.Restarts >= 3 })
	if st.LastExitCode == nil || *st.LastExitCode != 1 {
		t.Fatalf("last exit code = %v, want 1", st.LastExitCode)
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	if code := r.waitExit(t, ctx); code != supervisor.ExitOK {
		t.Fatalf("supervisor exit code %d", code)
	}
	st, _ = supervisor.ReadStatus(r.dir)
	if st.State != supervisor.StateStopped {
		t.Fatalf("state after stop = %s", st.State)
	}
	b, _ := os.ReadFile(filepath.Join(r.dir, supervisor.LogDir, supervisor.LogFile))
	if n := strings.Count(string(b), "crashing on purpose"); n < 3 {
		t.Fatalf("log has %d crash lines, want >= 3:\n%s", n, b)
	}
}

func TestCleanExitIsNotRestarted(t *testing.T) {
	ctx := testCtx(t)
	r := startSupervisor(t, spec("exit0"))
	if code := r.waitExit(t, ctx); code != supervisor.ExitOK {
		t.Fatalf("supervisor exit code %d", code)
	}
	st, _ := supervisor.ReadStatus(r.dir)
	if st.State != supervisor.StateExited || st.Restarts != 0 || st.LastExitCode == nil || *st.LastExitCode != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestMissingBinaryFails(t *testing.T) {
	ctx := testCtx(t)
	s := spec("http")
	s.Path = "/nonexistent/bpm-test-binary"
	r := startSupervisor(t, s)
	if code := r.waitExit(t, ctx); code != supervisor.ExitFailed {
		t.Fatalf("supervisor exit code %d, want %d", code, supervisor.ExitFailed)
	}
	st, _ := supervisor.ReadStatus(r.dir)
	if st.State != supervisor.StateFailed || !strings.Contains(st.LastError, "no such file") {
		t.Fatalf("status = %+v", st)
	}
}

func TestStopKillsGroupThatIgnoresSIGTERM(t *testing.T) {
	ctx := testCtx(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	r := startSupervisor(t, spec("ignore-term", testservice.EnvPIDFile+"="+pidFile))
	st := waitStatus(t, ctx, r.dir, func(s supervisor.Status) bool { return s.State == supervisor.StateRunning })
	pids := waitPIDs(t, ctx, pidFile)
	leaderStart, _ := supervisor.ProcessStartTime(pids[0])
	gcStart, _ := supervisor.ProcessStartTime(pids[1])
	if pids[0] != st.ChildPID {
		t.Fatalf("pid file leader %d != status child %d", pids[0], st.ChildPID)
	}

	r.cmd.Process.Signal(syscall.SIGTERM)
	if code := r.waitExit(t, ctx); code != supervisor.ExitOK {
		t.Fatalf("supervisor exit code %d", code)
	}
	st, _ = supervisor.ReadStatus(r.dir)
	if st.State != supervisor.StateStopped {
		t.Fatalf("state = %s", st.State)
	}
	if !strings.Contains(st.LastError, "killed") {
		t.Fatalf("last error %q, want the service killed", st.LastError)
	}
	// The grandchild was reparented away from the supervisor; it must have
	// died through the process group. Poll: the kernel may take a moment to
	// tear it down.
	for supervisor.Alive(pids[1], gcStart) || supervisor.Alive(pids[0], leaderStart) {
		select {
		case <-ctx.Done():
			t.Fatal("service or its grandchild survived the stop")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestSecondSupervisorIsRefused(t *testing.T) {
	ctx := testCtx(t)
	r := startSupervisor(t, spec("ignore-term", testservice.EnvPIDFile+"="+filepath.Join(t.TempDir(), "p")))
	first := waitStatus(t, ctx, r.dir, func(s supervisor.Status) bool { return s.State == supervisor.StateRunning })
	r2 := startOn(t, r.dir)
	if code := r2.waitExit(t, ctx); code != supervisor.ExitLocked {
		t.Fatalf("second supervisor exit code %d, want %d", code, supervisor.ExitLocked)
	}
	pid, start, err := supervisor.ReadPIDFile(r.dir)
	if err != nil || pid != first.SupervisorPID || start != first.SupervisorStart {
		t.Fatalf("pid file now %d %d %v, want the first supervisor's", pid, start, err)
	}
	if !supervisor.Alive(pid, start) {
		t.Fatal("first supervisor died")
	}
}

func TestUsage(t *testing.T) {
	var buf strings.Builder
	if code := supervisor.Main(nil, &buf); code != supervisor.ExitUsage {
		t.Fatalf("Main(nil) = %d", code)
	}
	if code := supervisor.Main([]string{"--bogus"}, &buf); code != supervisor.ExitUsage {
		t.Fatalf("Main(--bogus) = %d", code)
	}
}

func waitPIDs(t *testing.T, ctx context.Context, path string) [2]int {
	t.Helper()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var p [2]int
			f := strings.Fields(string(b))
			if len(f) == 2 {
				if _, err := fmtSscan(f, &p); err == nil {
					return p
				}
			}
		}
		if !errors.Is(err, os.ErrNotExist) && err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("service never wrote its pids")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func fmtSscan(f []string, p *[2]int) (int, error) {
	return fmt.Sscan(f[0]+" "+f[1], &p[0], &p[1])
}
