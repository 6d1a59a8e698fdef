package supervisor

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Exit codes of Main.
const (
	ExitOK       = 0 // service stopped on request or exited by policy
	ExitFailed   = 1 // the service could not be started at all
	ExitUsage    = 2 // bad flags or spec
	ExitLocked   = 3 // another supervisor already runs in this directory
	ExitInternal = 4
)

// Main runs a supervisor; args are the command-line arguments after the
// `supervise` subcommand (`--dir DIR`). It returns the process exit code and
// writes its own diagnostics (never the service's env) to stderr, which the
// provider points at a file in DIR.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "instance directory holding spec.json")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *dir == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: supervise --dir DIR")
		return ExitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("dir", *dir)

	// Stop requests arrive as signals. SIGHUP is caught and dropped, not
	// ignored: an ignored disposition survives exec and the service would
	// inherit it, while a caught one is reset to the default in the child.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
		}
	}()

	s := &supervisor{dir: *dir, logger: logger, sigs: sigs}
	return s.run()
}

type supervisor struct {
	dir    string
	spec   Spec
	logger *slog.Logger
	sigs   <-chan os.Signal
	st     Status
}

func (s *supervisor) run() int {
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		s.logger.Error("resolve dir", "err", err)
		return ExitUsage
	}
	s.dir = abs

	lock, err := os.OpenFile(filepath.Join(s.dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.logger.Error("open lock", "err", err)
		return ExitInternal
	}
	defer lock.Close()
	// The lock, not the pid file, is what guarantees one supervisor per
	// directory: two racing deploys of the same instance cannot both win.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		s.logger.Error("another supervisor holds the lock", "err", err)
		return ExitLocked
	}

	pid := os.Getpid()
	start, err := ProcessStartTime(pid)
	if err != nil {
		s.logger.Error("read own start time", "err", err)
		return ExitInternal
	}
	s.st = Status{SupervisorPID: pid, SupervisorStart: start, State: StateStarting}

	spec, err := ReadSpec(s.dir)
	if err == nil {
		err = spec.Validate()
	}
	if err != nil {
		s.fail(fmt.Errorf("spec: %w", err))
		return ExitUsage
	}
	s.spec = spec.withDefaults()

	if err := writePIDFile(s.dir, pid, start); err != nil {
		s.logger.Error("write pid file", "err", err)
		return ExitInternal
	}
	if err := os.MkdirAll(filepath.Join(s.dir, LogDir), 0o700); err != nil {
		s.fail(fmt.Errorf("log dir: %w", err))
		return ExitInternal
	}
	logw, err := openRotating(filepath.Join(s.dir, LogDir, LogFile), s.spec.Logs.MaxBytes, s.spec.Logs.MaxFiles)
	if err != nil {
		s.fail(err)
		return ExitInternal
	}
	defer logw.Close()

	// One pipe for the supervisor's whole life: every incarnation of the
	// service writes to the same write end, so restarts need no new copier
	// and a grandchild holding the pipe open cannot stall a restart.
	pr, pw, err := os.Pipe()
	if err != nil {
		s.fail(fmt.Errorf("pipe: %w", err))
		return ExitInternal
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(logw, pr)
	}()
	defer func() {
		pw.Close()
		// Drain what the service wrote before it died, but do not wait
		// forever on a stray process that inherited the pipe.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		pr.Close()
	}()

	return s.loop(pw)
}

func (s *supervisor) loop(out *os.File) int {
	backoff := time.Duration(s.spec.Restart.InitialBackoff)
	for attempt := 0; ; attempt++ {
		s.st.State = StateStarting
		s.st.NextRestart = time.Time{}
		s.write()

		cmd := &exec.Cmd{
			Path:   s.spec.Path,
			Args:   append([]string{s.spec.Path}, s.spec.Args...),
			Env:    append([]string{}, s.spec.Env...), // non-nil: inherit nothing
			Dir:    s.spec.Dir,
			Stdout: out,
			Stderr: out,
			// Its own process group, so a stop reaches everything the
			// service forked, and a terminal's signals never reach it.
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		if err := cmd.Start(); err != nil {
			if attempt == 0 {
				// Never ran: the binary is missing or not executable.
				// Retrying cannot help, and the deploy must fail loudly.
				s.fail(fmt.Errorf("start: %w", err))
				return ExitFailed
			}
			s.st.LastError = fmt.Sprintf("start: %v", err)
			s.st.LastExitCode = nil
			s.logger.Warn("restart failed", "err", err)
		} else {
			stopped, ok := s.runChild(cmd)
			if stopped {
				return ExitOK
			}
			if ok {
				backoff = time.Duration(s.spec.Restart.InitialBackoff)
			}
			if !s.shouldRestart() {
				s.st.State = StateExited
				s.write()
				s.logger.Info("service exited; not restarting", "policy", s.spec.Restart.Policy)
				return ExitOK
			}
		}

		s.st.Restarts++
		s.st.State = StateBackoff
		s.st.NextRestart = time.Now().Add(backoff).UTC()
		s.write()
		s.logger.Info("restarting after backoff", "backoff", backoff, "restarts", s.st.Restarts)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case sig := <-s.sigs:
			t.Stop()
			s.logger.Info("stop requested during backoff", "signal", sig)
			s.st.State = StateStopped
			s.write()
			return ExitOK
		}
		backoff = min(2*backoff, time.Duration(s.spec.Restart.MaxBackoff))
	}
}

// runChild waits for the started service to exit or for a stop request.
// stopped is true when a stop request ended it; longRun is true when it had
// stayed up long enough to reset the backoff.
func (s *supervisor) runChild(cmd *exec.Cmd) (stopped, longRun bool) {
	pid := cmd.Process.Pid
	started := time.Now()
	startTicks, _ := ProcessStartTime(pid)
	s.st.State = StateRunning
	s.st.ChildPID = pid
	s.st.ChildStartTicks = startTicks
	s.st.ChildStarted = started.UTC()
	s.write()
	s.logger.Info("service started", "pid", pid, "restarts", s.st.Restarts)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case err := <-exited:
		// Whatever the service forked dies with it: a leftover holding the
		// port would make every restart fail.
		_ = SignalGroup(pid, syscall.SIGKILL)
		s.recordExit(cmd, err)
		return false, time.Since(started) >= time.Duration(s.spec.Restart.ResetAfter)
	case sig := <-s.sigs:
		s.logger.Info("stop requested", "signal", sig, "pid", pid)
		s.st.State = StateStopping
		s.write()
		s.stopGroup(pid, exited, cmd)
		s.st.State = StateStopped
		s.write()
		return true, false
	}
}

// stopGroup sends SIGTERM to the service's process group, and SIGKILL to the
// group when the grace period runs out.
func (s *supervisor) stopGroup(pgid int, exited <-chan error, cmd *exec.Cmd) {
	_ = SignalGroup(pgid, syscall.SIGTERM)
	grace := time.NewTimer(time.Duration(s.spec.GracePeriod))
	defer grace.Stop()
	var err error
	select {
	case err = <-exited:
	case <-grace.C:
		s.logger.Warn("grace period over; killing process group", "pgid", pgid, "grace", time.Duration(s.spec.GracePeriod))
		_ = SignalGroup(pgid, syscall.SIGKILL)
		err = <-exited
	}
	// The leader is gone; members that ignored SIGTERM are not.
	_ = SignalGroup(pgid, syscall.SIGKILL)
	s.recordExit(cmd, err)
}

func (s *supervisor) recordExit(cmd *exec.Cmd, err error) {
	s.st.ChildPID = 0
	s.st.ChildStartTicks = 0
	code := cmd.ProcessState.ExitCode()
	s.st.LastError = ""
	if code >= 0 {
		s.st.LastExitCode = &code
	} else {
		s.st.LastExitCode = nil
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.st.LastError = ee.Error() // "exit status 1" or "signal: killed"
		} else {
			s.st.LastError = err.Error()
		}
	}
	s.logger.Info("service exited", "code", code, "err", s.st.LastError)
}

func (s *supervisor) shouldRestart() bool {
	switch s.spec.Restart.Policy {
	case RestartAlways:
		return true
	case RestartNever:
		return false
	default:
		return s.st.LastExitCode == nil || *s.st.LastExitCode != 0
	}
}

func (s *supervisor) fail(err error) {
	s.logger.Error("supervisor failed", "err", err)
	s.st.State = StateFailed
	s.st.LastError = err.Error()
	s.write()
}

func (s *supervisor) write() {
	if err := WriteStatus(s.dir, s.st); err != nil {
		s.logger.Error("write status", "err", err)
	}
}
