package manager

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// Reconcile makes state and the targets agree after a (re)start:
//   - an instance state knows and its provider still runs is adopted (its
//     state refreshed, never started a second time);
//   - an instance state knows that is gone is marked failed with the reason;
//   - a deploy the manager died in before recording the handle is adopted
//     when its instance runs on the target, and otherwise undone (whatever
//     it created removed) and marked failed (undoInterruptedDeploy);
//   - an instance left terminating by a crash is terminated;
//   - an instance a provider owns that state does not know (or knows as
//     terminated) is an orphan and is terminated, so nothing runs
//     unaccounted for.
//
// Remotes whose provider cannot be built (unreachable, not in this build)
// are skipped with a warning and retried on the next reconcile.
func (m *Manager) Reconcile(ctx context.Context) error {
	m.meterRecover(ctx) // cost: end intervals a crash left open (cost.go)
	live, err := m.store.ListInstances(ctx, state.Filter{})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	byRemote := map[string][]state.Instance{LocalRemote: nil}
	for _, in := range live {
		byRemote[in.Remote] = append(byRemote[in.Remote], in)
	}
	var errs []error
	for remote, insts := range byRemote {
		if err := m.reconcileRemote(ctx, remote, insts); err != nil {
			m.log.Warn("reconcile skipped a remote", "remote", remote, "err", err)
			errs = append(errs, err)
		}
	}
	m.syncBridges(ctx)
	m.syncRoutes(ctx)
	// Bring the hub up for the remotes that need it, so their gateways find
	// it again after a manager restart. A failure (no keystore passphrase,
	// port taken) leaves local instances unaffected and is retried by the
	// next deploy, terminate, export or tunnel status.
	if err := m.reconcilePeers(ctx); err != nil {
		m.log.Warn("tunnel hub not started", "err", err)
		errs = append(errs, err)
	}
	m.syncRemoteBridges(ctx)
	m.meterResume(ctx) // cost: reopen intervals of what still runs (cost.go)
	return errors.Join(errs...)
}

func (m *Manager) reconcileRemote(ctx context.Context, remote string, insts []state.Instance) error {
	p, err := m.providerFor(ctx, remote)
	if err != nil {
		return err
	}
	known := map[string]state.Instance{}
	for _, in := range insts {
		known[in.ID] = in
	}
	var owned map[string]provider.Owned
	if l, ok := p.(provider.Lister); ok {
		list, err := l.ListOwned(ctx)
		if err != nil {
			return fmt.Errorf("reconcile %s: list owned: %w", remote, err)
		}
		owned = map[string]provider.Owned{}
		for _, o := range list {
			owned[o.InstanceID] = o
		}
	}
	for _, in := range insts {
		m.reconcileInstance(ctx, p, in, owned)
	}
	for id, o := range owned {
		if _, ok := known[id]; ok {
			continue
		}
		m.log.Warn("terminating orphan", "instance", id, "remote", remote)
		if err := p.Terminate(ctx, provider.Ref{InstanceID: id, Remote: remote, Handle: o.Handle}); err != nil && !errors.Is(err, provider.ErrNotFound) {
			m.log.Error("terminate orphan", "instance", id, "err", err)
			continue
		}
		// An orphan with a terminated row gets the cleanup noted in its log.
		if _, err := m.store.GetInstance(ctx, id); err == nil {
			m.store.AppendEvent(ctx, id, "reconcile", "terminated an orphaned copy found on "+remote)
		}
	}
	return nil
}

func (m *Manager) reconcileInstance(ctx context.Context, p provider.Provider, in state.Instance, owned map[string]provider.Owned) {
	unlock := m.lockInstance(in.ID)
	defer unlock()
	log := m.log.With("instance", in.ID, "remote", in.Remote)
	// Re-read under the lock: the row may have moved on since the list.
	in, err := m.store.GetInstance(ctx, in.ID)
	if err != nil || in.State.Final() {
		return
	}
	o, found := owned[in.ID]
	interrupted := len(in.Handle) == 0 && (in.State == provider.StatePending || in.State == provider.StateCreating)
	if interrupted && !(found && startedOnTarget(o.State)) {
		m.undoInterruptedDeploy(ctx, p, in, o, found)
		return
	}
	if found && len(in.Handle) == 0 && len(o.Handle) > 0 {
		// The manager died after the instance started but before it
		// recorded the handle: adopt the handle the provider reports.
		if _, err := m.update(ctx, in.ID, state.Update{Handle: &o.Handle}); err != nil {
			log.Error("adopt handle", "err", err)
			return
		}
		in.Handle = o.Handle
		m.store.AppendEvent(ctx, in.ID, "reconcile", "adopted an instance whose deploy was interrupted")
	}
	if in.State == provider.StateTerminating {
		// As Terminate: a remote instance without a handle may still have
		// left something its provider finds by id.
		if len(in.Handle) > 0 || in.Remote != LocalRemote {
			if err := p.Terminate(ctx, provider.Ref{InstanceID: in.ID, Remote: in.Remote, Handle: in.Handle}); err != nil && !errors.Is(err, provider.ErrNotFound) {
				log.Error("finish interrupted terminate", "err", err)
				return
			}
		}
		if _, err := m.finishTerminate(ctx, in); err != nil {
			log.Error("finish interrupted terminate", "err", err)
			return
		}
		m.store.AppendEvent(ctx, in.ID, "reconcile", "finished a terminate interrupted by a manager restart")
		return
	}
	if len(in.Handle) == 0 {
		return
	}
	if owned != nil && !found {
		if in.State != provider.StateFailed {
			m.setState(ctx, in.ID, provider.StateFailed, "instance not found on its target after a manager restart")
		}
		return
	}
	if _, err := m.refresh(ctx, p, in); err != nil {
		log.Warn("status during reconcile", "err", err)
		return
	}
	if found {
		m.store.AppendEvent(ctx, in.ID, "reconcile", "re-attached after a manager restart")
	}
}

// undoInterruptedDeploy handles a deploy the manager died in before the
// instance ran: nothing on the target, or something created but never
// started (a docker container between create and start, which nobody would
// ever start). The client was told the deploy failed, so nothing of it may
// stay: Terminate removes what the target holds of it (found by name, which
// derives from the instance id alone, so a missing handle does not matter)
// and, with the remote's last instance, what the remote shares (docker's
// gateway, network and volume, which the interrupted deploy may have just
// made). The row is kept as failed so `bpm list` shows what happened. When
// the target cannot be cleaned now, the row stays as it is and the next
// reconcile tries again.
func (m *Manager) undoInterruptedDeploy(ctx context.Context, p provider.Provider, in state.Instance, o provider.Owned, found bool) {
	log := m.log.With("instance", in.ID, "remote", in.Remote)
	ref := provider.Ref{InstanceID: in.ID, Remote: in.Remote, Handle: o.Handle}
	if err := p.Terminate(ctx, ref); err != nil && !errors.Is(err, provider.ErrNotFound) {
		log.Warn("clean up an interrupted deploy", "err", err)
		m.store.AppendEvent(ctx, in.ID, "reconcile", "deploy interrupted by a manager restart; cleaning up its target failed, retried at the next start: "+err.Error())
		return
	}
	msg := "deploy interrupted by a manager restart before the instance started"
	ev := msg + "; nothing of it was found on " + in.Remote
	if found {
		msg += "; removed what it had created"
		ev = "deploy interrupted by a manager restart before the instance started; removed it from " + in.Remote + " (it was " + string(o.State) + ")"
	}
	m.setState(ctx, in.ID, provider.StateFailed, msg)
	m.store.AppendEvent(ctx, in.ID, "reconcile", ev)
	log.Warn("undid an interrupted deploy", "found", found)
}

// startedOnTarget: the target ran the instance (it may be restarting). A
// created or failed one did not, and nothing will start it.
func startedOnTarget(s provider.State) bool {
	return s == provider.StateRunning || s == provider.StateDegraded
}

// healthLoop refreshes every live instance's status each interval until ctx
// ends, so `list` reflects crashes and failed health checks.
func (m *Manager) healthLoop(ctx context.Context) {
	t := time.NewTicker(m.healthInt)
	defer t.Stop()
	// Instances still starting are looked at more often: the route to an
	// instance (and so the first answer through the proxy) follows the
	// status that says it answers, and a manifest's interval of seconds
	// would add up to that much to every deploy's time to ready.
	fast := time.NewTicker(startingInterval)
	defer fast.Stop()
	// Remote bridges are restored at start; one that could not be then
	// (the hub not up yet, a host unreachable) is retried here, off the
	// loop, since reaching a remote may take a dial timeout.
	bridges := time.NewTicker(exposeRefresh)
	defer bridges.Stop()
	var syncing atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
			m.checkStarting(ctx)
			continue
		case <-bridges.C:
			if syncing.CompareAndSwap(false, true) {
				go func() { defer syncing.Store(false); m.syncRemoteBridges(ctx) }()
			}
			continue
		case <-t.C:
		}
		m.checkAll(ctx)
		m.meterTick(ctx) // cost: heartbeat and budget alerts (cost.go)
	}
}

// startingInterval is how often an instance still starting (creating,
// within its start grace) is checked.
const startingInterval = 250 * time.Millisecond

// checkStarting refreshes the instances still starting. It reads the
// in-memory instance table, so it costs nothing while none is.
func (m *Manager) checkStarting(ctx context.Context) {
	starting := m.cache.ids(func(in state.Instance) bool {
		return in.State == provider.StateCreating && len(in.Handle) > 0 && time.Since(in.CreatedAt) <= m.startGrace
	})
	for _, id := range starting {
		unlock := m.lockInstance(id)
		cur, err := m.store.GetInstance(ctx, id)
		if err == nil && cur.State == provider.StateCreating {
			if p, perr := m.providerFor(ctx, cur.Remote); perr == nil {
				if _, err := m.refresh(ctx, p, cur); err != nil {
					m.log.Debug("starting: status", "instance", id, "err", err)
				}
			}
		}
		unlock()
	}
}

func (m *Manager) checkAll(ctx context.Context) {
	live, err := m.store.ListInstances(ctx, state.Filter{States: []provider.State{
		provider.StateRunning, provider.StateDegraded, provider.StateCreating,
	}})
	if err != nil {
		m.log.Error("health: list", "err", err)
		return
	}
	now := time.Now()
	for _, in := range live {
		if len(in.Handle) == 0 || !m.due(in, now) {
			continue
		}
		p, err := m.providerFor(ctx, in.Remote)
		if err != nil {
			continue
		}
		unlock := m.lockInstance(in.ID)
		// Re-read under the lock: a terminate may have just finished.
		cur, err := m.store.GetInstance(ctx, in.ID)
		if err == nil && !cur.State.Final() && cur.State != provider.StateTerminating {
			if _, err := m.refresh(ctx, p, cur); err != nil {
				m.log.Warn("health: status", "instance", in.ID, "err", err)
			}
		}
		unlock()
	}
}

// healthSchedule is when an instance is next checked, at the interval its
// manifest's [health] section asks for.
type healthSchedule struct {
	interval time.Duration
	next     time.Time
}

// due reports whether the instance's check is due at now, and if so moves
// its schedule on. An instance first seen here (after a manager restart)
// has its interval read from its package; a package that no longer loads
// gets the default.
func (m *Manager) due(in state.Instance, now time.Time) bool {
	m.mu.Lock()
	sch, ok := m.checks[in.ID]
	m.mu.Unlock()
	if !ok {
		interval := blueprint.DefaultHealthInterval
		if pkg, err := blueprint.Load(in.PackagePath); err == nil {
			interval = healthInterval(pkg)
		}
		sch = m.schedule(in.ID, interval)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Before(sch.next) {
		return false
	}
	sch.next = now.Add(sch.interval)
	return true
}

// schedule sets an instance's health interval; its first check is due now.
func (m *Manager) schedule(id string, interval time.Duration) *healthSchedule {
	sch := &healthSchedule{interval: interval}
	m.mu.Lock()
	m.checks[id] = sch
	m.mu.Unlock()
	return sch
}

func (m *Manager) unschedule(id string) {
	m.mu.Lock()
	delete(m.checks, id)
	m.mu.Unlock()
}

func healthInterval(pkg *blueprint.Package) time.Duration {
	if h := pkg.Manifest.Health; h != nil && h.Interval.Duration > 0 {
		return h.Interval.Duration
	}
	return blueprint.DefaultHealthInterval
}
