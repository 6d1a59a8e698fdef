package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// handle is what Deploy returns and the manager persists. The pid file in
// the instance directory is the primary record (it is rewritten by every new
// supervisor); the handle is the fallback when that file is unreadable.
type handle struct {
	Dir             string `json:"dir"`
	SupervisorPID   int    `json:"supervisor_pid"`
	SupervisorStart uint64 `json:"supervisor_start"`
}

func (h handle) encode() provider.Handle {
	b, _ := json.Marshal(h) // cannot fail: plain fields
	return b
}

func decodeHandle(b provider.Handle) (handle, error) {
	var h handle
	if len(b) == 0 {
		return h, nil
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("decode handle: %w", err)
	}
	return h, nil
}

// meta is instance.json: what Status needs, never a secret.
type meta struct {
	InstanceID  string `json:"instance_id"`
	Remote      string `json:"remote,omitempty"`
	BlueprintID uint64 `json:"blueprint_id"`
	ServiceID   uint64 `json:"service_id"`
	Address     string `json:"address,omitempty"`
	// Ports are the TCP ports the instance declared, so a later deploy can
	// see it holds them before the service has bound them.
	Ports       []int               `json:"ports,omitempty"`
	Health      *health.Spec        `json:"health,omitempty"`
	GracePeriod supervisor.Duration `json:"grace_period"`
	Created     time.Time           `json:"created"`
}

const metaFile = "instance.json"

func readMeta(dir string) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", metaFile, err)
	}
	return m, nil
}

func writeMeta(dir string, m meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+metaFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, metaFile))
}

// validID keeps instance ids usable as one path element: they come from the
// manager, but a path built from an id must never leave DataDir.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid instance id %q", id)
	}
	return nil
}

// instanceDir locates an instance: under DataDir by its id, or — when that
// does not exist, e.g. DataDir moved — where its handle says, as long as that
// path is an absolute directory named after the id.
func (p *Provider) instanceDir(ref provider.Ref) (string, handle, error) {
	if err := checkID(ref.InstanceID); err != nil {
		return "", handle{}, err
	}
	h, err := decodeHandle(ref.Handle)
	if err != nil {
		return "", handle{}, err
	}
	dir := filepath.Join(p.dir, ref.InstanceID)
	if exists(dir) {
		return dir, h, nil
	}
	if h.Dir != "" && filepath.IsAbs(h.Dir) && filepath.Base(h.Dir) == ref.InstanceID && exists(h.Dir) {
		return filepath.Clean(h.Dir), h, nil
	}
	return dir, h, fmt.Errorf("instance %s: %w", ref.InstanceID, provider.ErrNotFound)
}

func exists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// supervisorOf returns the recorded supervisor of dir, preferring the pid
// file, and whether that exact process (pid and start time) is alive.
func supervisorOf(dir string, h handle) (pid int, start uint64, alive bool) {
	pid, start, err := supervisor.ReadPIDFile(dir)
	if err != nil {
		pid, start = h.SupervisorPID, h.SupervisorStart
	}
	return pid, start, supervisor.Alive(pid, start)
}

// orphan reports the service process recorded in status.json when it is
// still alive although its supervisor is not.
func orphan(st supervisor.Status) (pid int, ok bool) {
	if st.ChildPID > 0 && supervisor.Alive(st.ChildPID, st.ChildStartTicks) {
		return st.ChildPID, true
	}
	return 0, false
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
