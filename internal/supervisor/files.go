package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// File names inside an instance directory.
const (
	SpecFile   = "spec.json"
	StatusFile = "status.json"
	PIDFile    = "supervisor.pid"
	LockFile   = "supervisor.lock"
	LogDir     = "logs"
	LogFile    = "instance.log"
)

// RestartPolicy says when a service that exited is started again.
type RestartPolicy string

// Restart policies. OnFailure, the default, restarts after a non-zero exit
// or a signal but treats exit 0 as the service deciding it is done.
const (
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
	RestartNever     RestartPolicy = "never"
)

// Duration is a time.Duration written in JSON as a Go duration string, so
// spec.json and status.json stay readable by an operator.
type Duration time.Duration

// MarshalJSON writes the duration as "10s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Restart tunes restarts. Zero fields take the defaults.
type Restart struct {
	Policy RestartPolicy `json:"policy,omitempty"`
	// InitialBackoff is the first wait before a restart; it doubles per
	// consecutive failure up to MaxBackoff.
	InitialBackoff Duration `json:"initial_backoff,omitempty"`
	MaxBackoff     Duration `json:"max_backoff,omitempty"`
	// ResetAfter: a run that stayed up this long resets the backoff, so a
	// service that crashes once a day restarts quickly each time.
	ResetAfter Duration `json:"reset_after,omitempty"`
}

// Logs caps the service's log files.
type Logs struct {
	MaxBytes int64 `json:"max_bytes,omitempty"` // per file
	MaxFiles int   `json:"max_files,omitempty"` // including the live file
}

// Defaults.
const (
	DefaultGracePeriod    = 10 * time.Second
	DefaultInitialBackoff = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultResetAfter     = 60 * time.Second
	DefaultLogMaxBytes    = 10 << 20
	DefaultLogMaxFiles    = 3
)

// Spec is what the supervisor runs. It may hold secrets in Env: it is written
// 0600 and never logged.
type Spec struct {
	Path string   `json:"path"` // absolute
	Args []string `json:"args,omitempty"`
	// Env is the service's complete environment as KEY=VALUE; nothing is
	// inherited from the supervisor.
	Env         []string `json:"env"`
	Dir         string   `json:"dir,omitempty"` // working directory
	GracePeriod Duration `json:"grace_period,omitempty"`
	Restart     Restart  `json:"restart"`
	Logs        Logs     `json:"logs"`
}

// withDefaults fills zero fields.
func (s Spec) withDefaults() Spec {
	if s.GracePeriod <= 0 {
		s.GracePeriod = Duration(DefaultGracePeriod)
	}
	if s.Restart.Policy == "" {
		s.Restart.Policy = RestartOnFailure
	}
	if s.Restart.InitialBackoff <= 0 {
		s.Restart.InitialBackoff = Duration(DefaultInitialBackoff)
	}
	if s.Restart.MaxBackoff <= 0 {
		s.Restart.MaxBackoff = Duration(DefaultMaxBackoff)
	}
	if s.Restart.MaxBackoff < s.Restart.InitialBackoff {
		s.Restart.MaxBackoff = s.Restart.InitialBackoff
	}
	if s.Restart.ResetAfter <= 0 {
		s.Restart.ResetAfter = Duration(DefaultResetAfter)
	}
	if s.Logs.MaxBytes <= 0 {
		s.Logs.MaxBytes = DefaultLogMaxBytes
	}
	if s.Logs.MaxFiles <= 0 {
		s.Logs.MaxFiles = DefaultLogMaxFiles
	}
	return s
}

// Validate reports what makes the spec unrunnable. Values are never quoted,
// because env values may be secret.
func (s Spec) Validate() error {
	var errs []error
	if s.Path == "" {
		errs = append(errs, errors.New("path is empty"))
	} else if !filepath.IsAbs(s.Path) {
		errs = append(errs, fmt.Errorf("path %q is not absolute", s.Path))
	}
	for i, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(kv, 0) {
			errs = append(errs, fmt.Errorf("env entry %d is not KEY=VALUE", i))
		}
	}
	switch s.Restart.Policy {
	case "", RestartOnFailure, RestartAlways, RestartNever:
	default:
		errs = append(errs, fmt.Errorf("restart policy %q is not on-failure, always or never", s.Restart.Policy))
	}
	return errors.Join(errs...)
}

// State is the supervisor's view of its service.
type State string

// Supervisor states.
const (
	StateStarting State = "starting" // about to exec the service
	StateRunning  State = "running"  // the service process exists
	StateBackoff  State = "backoff"  // the service exited; waiting to restart it
	StateStopping State = "stopping" // asked to stop; signalling the service
	StateStopped  State = "stopped"  // stopped on request; final
	StateExited   State = "exited"   // exited and not restarted by policy; final
	StateFailed   State = "failed"   // could not be started at all; final
)

// Final reports whether the supervisor has finished (or will exit at once).
func (s State) Final() bool {
	return s == StateStopped || s == StateExited || s == StateFailed
}

// Status is status.json.
type Status struct {
	SupervisorPID   int       `json:"supervisor_pid"`
	SupervisorStart uint64    `json:"supervisor_start"` // /proc start time, clock ticks
	State           State     `json:"state"`
	ChildPID        int       `json:"child_pid,omitempty"`
	ChildStartTicks uint64    `json:"child_start_ticks,omitempty"`
	ChildStarted    time.Time `json:"child_started,omitzero"`
	Restarts        int       `json:"restarts"`
	LastExitCode    *int      `json:"last_exit_code,omitempty"`
	LastError       string    `json:"last_error,omitempty"`
	NextRestart     time.Time `json:"next_restart,omitzero"`
	Updated         time.Time `json:"updated"`
}

// WriteSpec writes dir/spec.json with mode 0600.
func WriteSpec(dir string, spec Spec) error {
	b, err := MarshalSpec(spec)
	if err != nil {
		return err
	}
	return writeAtomic(dir, SpecFile, b, 0o600)
}

// MarshalSpec validates spec and encodes it as spec.json's bytes, for a
// caller that writes it elsewhere (over SFTP): the env it holds never
// touches a local file.
func MarshalSpec(spec Spec) ([]byte, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("supervisor: spec: %w", err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("supervisor: spec: %w", err)
	}
	return b, nil
}

// ReadSpec reads dir/spec.json.
func ReadSpec(dir string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return s, fmt.Errorf("supervisor: read spec: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("supervisor: decode %s: %w", SpecFile, err)
	}
	return s, nil
}

// ReadStatus reads dir/status.json; errors.Is(err, fs.ErrNotExist) when the
// supervisor has not written one yet.
func ReadStatus(dir string) (Status, error) {
	var s Status
	b, err := os.ReadFile(filepath.Join(dir, StatusFile))
	if err != nil {
		return s, fmt.Errorf("supervisor: read status: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("supervisor: decode %s: %w", StatusFile, err)
	}
	return s, nil
}

// WriteStatus replaces dir/status.json atomically. The provider uses it only
// when the supervisor is gone (to record a stop it performed itself).
func WriteStatus(dir string, st Status) error {
	st.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("supervisor: status: %w", err)
	}
	return writeAtomic(dir, StatusFile, b, 0o644)
}

// ReadPIDFile returns the supervisor pid and start time recorded in dir.
func ReadPIDFile(dir string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		return 0, 0, fmt.Errorf("supervisor: read pid file: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("supervisor: %s: want \"PID STARTTIME\"", PIDFile)
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("supervisor: %s: malformed", PIDFile)
	}
	return pid, start, nil
}

func writePIDFile(dir string, pid int, start uint64) error {
	return writeAtomic(dir, PIDFile, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644)
}

// writeAtomic writes via a temp file and rename so a reader never sees a
// torn file. No fsync: after a machine crash every process is gone anyway
// and a stale status is corrected by the liveness check.
func writeAtomic(dir, name string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("supervisor: write %s: %w", name, err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Chmod(mode)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(dir, name))
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("supervisor: write %s: %w", name, werr)
	}
	return nil
}
