package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// Status maps the supervisor's liveness and status.json to a provider state
// and, for a running service with a health check, probes it: running but
// unhealthy is degraded.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	dir, h, err := p.instanceDir(ref)
	if err != nil {
		return provider.Status{}, fmt.Errorf("local: status: %w", err)
	}
	return p.status(ctx, dir, h, true), nil
}

func (p *Provider) status(ctx context.Context, dir string, h handle, checkHealth bool) provider.Status {
	m, _ := readMeta(dir)
	st, stErr := supervisor.ReadStatus(dir)
	_, _, alive := supervisorOf(dir, h)
	out := provider.Status{Address: m.Address, Restarts: st.Restarts, Since: st.Updated}

	out.State, out.Message = supervisor.Observe(st, alive, stErr)
	switch {
	case out.State == provider.StateRunning:
		out.Since = st.ChildStarted
		if checkHealth && m.Health != nil {
			if err := health.Check(ctx, *m.Health); err != nil {
				out.State, out.Message = provider.StateDegraded, err.Error()
			}
		}
	case !alive && out.State == provider.StateFailed:
		if pid, ok := orphan(st); ok {
			out.Message += fmt.Sprintf("; service pid %d still runs unsupervised", pid)
		}
	}
	return out
}

// Terminate stops the instance: SIGTERM to its supervisor, which stops the
// service's process group (SIGTERM, SIGKILL after the grace period). If the
// supervisor does not exit within grace plus a margin it is killed, and so is
// the service's group. Terminating an instance that is gone succeeds. The
// instance directory (logs, data) is kept.
func (p *Provider) Terminate(ctx context.Context, ref provider.Ref) error {
	dir, h, err := p.instanceDir(ref)
	if err != nil {
		if checkID(ref.InstanceID) != nil {
			return fmt.Errorf("local: terminate: %w", err)
		}
		return nil // nothing of it exists
	}
	unlock := p.lock(ref.InstanceID)
	defer unlock()
	m, _ := readMeta(dir)
	grace := time.Duration(m.GracePeriod)
	if grace <= 0 {
		grace = p.opts.GracePeriod
	}
	pid, start, _ := supervisorOf(dir, h)
	if err := p.stopSupervisor(ctx, dir, pid, start, grace, nil, false); err != nil {
		return fmt.Errorf("local: terminate %s: %w", ref.InstanceID, err)
	}
	p.logger.Info("terminated", "instance", ref.InstanceID)
	return nil
}

// stopSupervisor stops the supervisor pid (verified by start time) and makes
// sure no service process of dir survives, then records the stop.
// exited, when not nil, closes when this process has reaped the supervisor.
// keepFinal keeps a final state the supervisor recorded (a failed start
// stays failed); Terminate overrides it, since the operator asked for a stop.
func (p *Provider) stopSupervisor(ctx context.Context, dir string, pid int, start uint64, grace time.Duration, exited <-chan struct{}, keepFinal bool) error {
	if supervisor.Alive(pid, start) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitDead(ctx, grace+5*time.Second, pid, start) {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("waiting for supervisor %d: %w", pid, err)
			}
			p.logger.Warn("supervisor ignored SIGTERM; killing it", "dir", dir, "pid", pid)
			if supervisor.Alive(pid, start) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			waitDead(ctx, 5*time.Second, pid, start)
			grace = 0 // its grace has been spent: kill the service outright
		}
	}
	if exited != nil {
		<-exitedOr(ctx, exited)
	}
	st, err := supervisor.ReadStatus(dir)
	if err != nil && !isNotExist(err) {
		return err
	}
	if cpid, ok := orphan(st); ok {
		p.logger.Warn("stopping unsupervised service", "dir", dir, "pid", cpid)
		stopGroup(ctx, cpid, st.ChildStartTicks, grace)
	}
	if st.State != supervisor.StateStopped && !(keepFinal && st.State.Final()) {
		// The supervisor could not record the stop itself (it was dead or
		// killed); record it so Status reports terminated, not failed.
		st.State, st.ChildPID, st.ChildStartTicks = supervisor.StateStopped, 0, 0
		if err := supervisor.WriteStatus(dir, st); err != nil {
			return err
		}
	}
	return nil
}

// stopGroup stops a service process group whose supervisor is gone.
func stopGroup(ctx context.Context, pgid int, ticks uint64, grace time.Duration) {
	if !supervisor.Alive(pgid, ticks) {
		return
	}
	_ = supervisor.SignalGroup(pgid, syscall.SIGTERM)
	waitDead(ctx, grace, pgid, ticks)
	_ = supervisor.SignalGroup(pgid, syscall.SIGKILL)
	waitDead(ctx, 5*time.Second, pgid, ticks)
}

// waitDead polls until the process is gone or d (or ctx) runs out; it
// reports whether the process is gone.
func waitDead(ctx context.Context, d time.Duration, pid int, start uint64) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for supervisor.Alive(pid, start) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return !supervisor.Alive(pid, start)
		case <-tick.C:
		}
	}
	return true
}

// ListOwned returns every instance under DataDir that still has a process:
// a live supervisor, or a service that outlived its supervisor (so the
// manager's reconcile can terminate it). Stopped and dead instances are left
// out; their directories are history, not running resources.
func (p *Provider) ListOwned(ctx context.Context) ([]provider.Owned, error) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("local: list: %w", err)
	}
	var out []provider.Owned
	for _, e := range entries {
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("local: list: %w", err)
		}
		dir := filepath.Join(p.dir, e.Name())
		pid, start, alive := supervisorOf(dir, handle{})
		if !alive {
			st, err := supervisor.ReadStatus(dir)
			if err != nil {
				continue
			}
			if _, ok := orphan(st); !ok {
				continue
			}
		}
		// Health is not probed here: listing must stay fast with many
		// instances, and reconcile only needs to know what exists.
		s := p.status(ctx, dir, handle{}, false)
		out = append(out, provider.Owned{
			InstanceID: e.Name(),
			Handle:     handle{Dir: dir, SupervisorPID: pid, SupervisorStart: start}.encode(),
			State:      s.State,
		})
	}
	return out, nil
}
