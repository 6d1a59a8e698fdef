package manager

// Cost: estimate and budget gate before the intent row, the meter's
// running intervals, the health loop's heartbeat and budget checks, and
// the cost API. Kept in this file so the orchestration files carry only
// one-line hooks marked "cost:".

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/cost"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// aliveKey holds the last time the health loop saw the manager alive
// (Unix nanoseconds, decimal): where intervals a crash left open end.
const aliveKey = "cost/alive"

// costTick is how often the health loop records the heartbeat and checks
// budgets: often enough that a crash loses at most this much metered time
// and an alert fires within it, rarely enough to cost nothing.
const costTick = 30 * time.Second

type costState struct {
	mu    sync.Mutex
	now   func() time.Time
	rates map[string]float64 // instance id → hourly USD, filled lazily
	last  time.Time          // last heartbeat / budget check
	hook  cost.Webhook
	wg    sync.WaitGroup // webhook deliveries in flight
}

// SetCostClock replaces the clock the meter, budgets and estimates read
// (tests simulate a month without sleeping), and the webhook's retry
// backoff (nil keeps the default).
func (m *Manager) SetCostClock(now func() time.Time, backoff []time.Duration) {
	m.cost.mu.Lock()
	m.cost.now = now
	m.cost.hook.Backoff = backoff
	m.cost.mu.Unlock()
}

func (m *Manager) costNow() time.Time {
	m.cost.mu.Lock()
	f := m.cost.now
	m.cost.mu.Unlock()
	if f == nil {
		return time.Now().UTC()
	}
	return f().UTC()
}

func (m *Manager) budgets() cost.Budgets { return cost.Budgets{Store: m.store} }

// estimate prices one instance of pkg on remote, counting the instances
// that already share the remote (a Kubernetes cluster's fee).
func (m *Manager) estimate(remote string, res blueprint.Resources) (*cost.Estimate, error) {
	cat, err := cost.Builtin()
	if err != nil {
		return nil, err
	}
	req, ok, err := cost.ForRemote(m.cfg, remote, res)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	if !ok {
		return nil, fmt.Errorf("remote %q: %w in config (configured: %v)", remote, provider.ErrNotFound, m.cfg.RemoteNames())
	}
	req.ClusterInstances = len(m.cache.matching(state.Filter{Remote: remote})) + 1
	req.Now = m.costNow()
	return cat.Estimate(req), nil
}

// costGate runs before Deploy's intent row: it prices the instance and
// refuses (provider.ErrQuota, exit 8) when the forecast with it would
// break a budget that applies, unless req.Force. A refusal records
// nothing. It returns the hourly rate the meter will charge.
func (m *Manager) costGate(ctx context.Context, req api.DeployRequest, remote string, pkg *blueprint.Package) (float64, error) {
	e, err := m.estimate(remote, pkg.Manifest.Resources)
	if err != nil {
		return 0, err
	}
	hourly := e.HourlyUSD
	if hourly == 0 {
		return 0, nil
	}
	bs, err := m.budgets().List(ctx)
	if err != nil || len(bs) == 0 {
		return hourly, err
	}
	now := m.costNow()
	rep := m.costReport(ctx, "", now)
	for _, b := range bs {
		if !b.Applies(remote) {
			continue
		}
		spend := rep.Total
		if b.Scope != cost.GlobalScope {
			spend = lineFor(rep, b.Scope)
		}
		f, breaks := b.WouldBreak(spend.ForecastUSD, hourly, now)
		if !breaks {
			continue
		}
		scope := "the global budget"
		if b.Scope != cost.GlobalScope {
			scope = "remote " + b.Scope + "'s budget"
		}
		msg := fmt.Sprintf("deploying %s to %s at $%.4f/hour would bring this month's forecast to $%.2f, over %s of $%.2f",
			pkg.Manifest.Name, remote, hourly, f, scope, b.MonthlyLimitUSD)
		if req.Force {
			m.log.Warn("cost: over budget, deploying anyway (--force)", "remote", remote, "detail", msg)
			continue
		}
		return 0, fmt.Errorf("%s; raise the limit (bpm set-alert) or deploy with --force: %w", msg, provider.ErrQuota)
	}
	return hourly, nil
}

func (m *Manager) setCostRate(id string, hourly float64) {
	m.cost.mu.Lock()
	if m.cost.rates == nil {
		m.cost.rates = map[string]float64{}
	}
	m.cost.rates[id] = hourly
	m.cost.mu.Unlock()
}

// dropCostRate forgets a terminated instance's rate, so the table holds
// live instances only.
func (m *Manager) dropCostRate(id string) {
	m.cost.mu.Lock()
	delete(m.cost.rates, id)
	m.cost.mu.Unlock()
}

// costRate is an instance's hourly rate: the one priced at deploy, else
// the one its last interval ran at, else priced again from its package.
func (m *Manager) costRate(ctx context.Context, in state.Instance) float64 {
	m.cost.mu.Lock()
	r, ok := m.cost.rates[in.ID]
	m.cost.mu.Unlock()
	if ok {
		return r
	}
	if r, ok, err := m.store.LastRate(ctx, in.ID); err == nil && ok {
		m.setCostRate(in.ID, r)
		return r
	}
	if pkg, err := blueprint.Load(in.PackagePath); err == nil {
		if e, err := m.estimate(in.Remote, pkg.Manifest.Resources); err == nil {
			m.setCostRate(in.ID, e.HourlyUSD)
			return e.HourlyUSD
		}
	}
	m.log.Warn("cost: cannot price instance; metering it at $0", "instance", in.ID)
	return 0
}

// meterObserve follows a state change: running and degraded instances
// accrue (a degraded one still holds its resources), every other state
// ends the interval. A launch that fails never reaches running, so it
// costs nothing.
func (m *Manager) meterObserve(ctx context.Context, in state.Instance) {
	now := m.costNow()
	var err error
	switch in.State {
	case provider.StateRunning, provider.StateDegraded:
		_, err = m.store.OpenInterval(ctx, in.ID, now, m.costRate(ctx, in))
	default:
		err = m.store.CloseInterval(ctx, in.ID, now)
	}
	if err != nil {
		m.log.Error("cost: meter", "instance", in.ID, "err", err)
	}
}

// meterRecover runs first in Reconcile: intervals a crash left open end at
// the last heartbeat (the last time the manager knew they ran), or now
// when there is none. The stretch between the heartbeat and this restart
// is not charged: nothing watched it, and meterResume reopens what still
// runs.
func (m *Manager) meterRecover(ctx context.Context) {
	at := m.costNow()
	if v, err := m.store.GetMeta(ctx, aliveKey); err == nil {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n < at.UnixNano() {
			at = time.Unix(0, n).UTC()
		}
	}
	if n, err := m.store.CloseOpenIntervals(ctx, at); err != nil {
		m.log.Error("cost: close intervals left open", "err", err)
	} else if n > 0 {
		m.log.Info("cost: closed intervals left open by the last run", "count", n, "at", at)
	}
}

// meterResume runs last in Reconcile: it reopens intervals for instances
// still running, and resumes webhook deliveries a stop interrupted.
func (m *Manager) meterResume(ctx context.Context) {
	for _, in := range m.cache.matching(state.Filter{}) {
		if in.State == provider.StateRunning || in.State == provider.StateDegraded {
			m.meterObserve(ctx, in)
		}
	}
	m.beat(ctx, m.costNow())
	alerts, err := m.budgets().Undelivered(ctx)
	if err != nil {
		m.log.Error("cost: pending alerts", "err", err)
		return
	}
	bs, _ := m.budgets().List(ctx)
	for _, a := range alerts {
		for _, b := range bs {
			if b.Scope == a.Scope && b.Webhook != "" {
				m.deliver(ctx, b.Webhook, a)
			}
		}
	}
}

func (m *Manager) beat(ctx context.Context, now time.Time) {
	if err := m.store.SetMeta(ctx, aliveKey, []byte(strconv.FormatInt(now.UnixNano(), 10))); err != nil {
		m.log.Error("cost: heartbeat", "err", err)
	}
}

// meterTick is called by the health loop each pass; at most every
// costTick it records the heartbeat and checks budgets.
func (m *Manager) meterTick(ctx context.Context) {
	now := m.costNow()
	m.cost.mu.Lock()
	due := now.Sub(m.cost.last) >= costTick
	if due {
		m.cost.last = now
	}
	m.cost.mu.Unlock()
	if !due {
		return
	}
	m.CostTick(ctx)
}

// CostTick records the heartbeat and checks budgets now. The health loop
// calls it every costTick; tests call it at simulated times.
func (m *Manager) CostTick(ctx context.Context) {
	m.beat(ctx, m.costNow())
	m.CheckBudgets(ctx)
}

// CheckBudgets raises every threshold crossing not raised before this
// month: a log line, the webhook, and with stop_at_limit at 100% or more,
// terminating the scope's instances.
func (m *Manager) CheckBudgets(ctx context.Context) {
	bs, err := m.budgets().List(ctx)
	if err != nil || len(bs) == 0 {
		return
	}
	now := m.costNow()
	rep := m.costReport(ctx, "", now)
	for _, b := range bs {
		spend := rep.Total
		if b.Scope != cost.GlobalScope {
			spend = lineFor(rep, b.Scope)
		}
		alerts, err := m.budgets().Crossings(ctx, b, spend, now)
		if err != nil {
			m.log.Error("cost: record alert", "scope", b.Scope, "err", err)
		}
		for _, a := range alerts {
			m.log.Warn("cost alert: "+a.Message(), "scope", a.Scope, "threshold_pct", a.ThresholdPct)
			if b.Webhook != "" {
				m.deliver(ctx, b.Webhook, a)
			}
			if b.StopAtLimit && a.ThresholdPct >= 100 {
				m.stopScope(ctx, b.Scope)
			}
		}
	}
}

// deliver posts an alert in the background; the manager's context ends it.
func (m *Manager) deliver(ctx context.Context, url string, a cost.Alert) {
	m.cost.mu.Lock()
	hook := m.cost.hook
	m.cost.mu.Unlock()
	hook.Log = m.log
	m.cost.wg.Add(1)
	go func() {
		defer m.cost.wg.Done()
		dctx := context.WithoutCancel(ctx)
		if err := hook.Deliver(dctx, url, a); err != nil {
			m.log.Error("cost alert webhook not delivered; retried at the next manager start", "err", err)
			return
		}
		if err := m.budgets().MarkDelivered(dctx, a); err != nil {
			m.log.Error("cost: record delivery", "err", err)
		}
	}()
}

// WaitAlerts waits for webhook deliveries in flight (tests, shutdown).
func (m *Manager) WaitAlerts() { m.cost.wg.Wait() }

func (m *Manager) stopScope(ctx context.Context, scope string) {
	for _, in := range m.cache.matching(state.Filter{}) {
		if scope != cost.GlobalScope && in.Remote != scope {
			continue
		}
		m.log.Warn("cost: stopping instance at the budget limit (stop_at_limit)", "instance", in.ID, "remote", in.Remote)
		if _, err := m.Terminate(ctx, in.ID); err != nil {
			m.log.Error("cost: stop at limit", "instance", in.ID, "err", err)
		}
	}
}

func lineFor(rep *cost.Report, remote string) cost.Line {
	for _, l := range rep.Remotes {
		if l.Remote == remote {
			return l
		}
	}
	return cost.Line{Remote: remote}
}

// costReport sums this month's intervals, of one remote or all.
func (m *Manager) costReport(ctx context.Context, remote string, now time.Time) *cost.Report {
	s := cost.NewSummary(now)
	m.cache.mu.RLock()
	byID := m.cache.byID
	err := m.store.EachInterval(ctx, cost.MonthStart(now), func(iv state.Interval) error {
		if remote != "" && byID[iv.InstanceID].Remote != remote {
			return nil
		}
		s.Add(iv)
		return nil
	})
	m.cache.mu.RUnlock()
	if err != nil {
		m.log.Error("cost: report", "err", err)
	}
	m.cache.mu.RLock()
	defer m.cache.mu.RUnlock()
	return s.Report(func(id string) (state.Instance, bool) {
		in, ok := m.cache.byID[id]
		return in, ok
	})
}

// Costs is the cost report API.
func (m *Manager) Costs(ctx context.Context, remote string) (*cost.Report, error) {
	if remote != "" && remote != LocalRemote {
		if _, ok := m.cfg.Remotes[remote]; !ok {
			return nil, fmt.Errorf("remote %q: %w in config (configured: %v)", remote, provider.ErrNotFound, m.cfg.RemoteNames())
		}
	}
	return m.costReport(ctx, remote, m.costNow()), nil
}

// SetBudget stores or deletes a budget and returns every budget.
func (m *Manager) SetBudget(ctx context.Context, req api.BudgetRequest) ([]cost.Budget, error) {
	scope := req.Remote
	if scope == "" {
		scope = cost.GlobalScope
	} else if _, ok := m.cfg.Remotes[scope]; !ok && scope != LocalRemote {
		return nil, fmt.Errorf("remote %q: %w in config (configured: %v)", scope, provider.ErrNotFound, m.cfg.RemoteNames())
	}
	if req.Delete {
		if err := m.budgets().Delete(ctx, scope); err != nil {
			return nil, err
		}
	} else {
		b := cost.Budget{Scope: scope, MonthlyLimitUSD: req.MonthlyLimitUSD, Thresholds: req.Thresholds,
			Webhook: req.Webhook, StopAtLimit: req.StopAtLimit}
		if err := m.budgets().Set(ctx, b); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) {
				return nil, err
			}
			return nil, api.Invalid("budget: %v", err)
		}
		// A limit lowered below this month's spend alerts now, not at the
		// next tick.
		m.CheckBudgets(ctx)
	}
	return m.budgets().List(ctx)
}

func (m *Manager) costRoutes(mux *http.ServeMux, p string) {
	mux.HandleFunc("POST "+p+"/cost/estimate", func(w http.ResponseWriter, r *http.Request) {
		var req api.EstimateRequest
		if err := decodeStrict(r.Header.Get("Content-Type"), r.Body, &req); err != nil {
			writeError(w, err)
			return
		}
		pkg, err := blueprint.Load(req.PackagePath)
		if err != nil {
			writeError(w, fmt.Errorf("%w: %w", api.ErrInvalid, err))
			return
		}
		remote := req.Remote
		if remote == "" {
			remote = LocalRemote
		}
		e, err := m.estimate(remote, pkg.Manifest.Resources)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	mux.HandleFunc("GET "+p+"/cost/report", func(w http.ResponseWriter, r *http.Request) {
		rep, err := m.Costs(r.Context(), r.URL.Query().Get("remote"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET "+p+"/cost/budgets", func(w http.ResponseWriter, r *http.Request) {
		bs, err := m.budgets().List(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, bs)
	})
	mux.HandleFunc("PUT "+p+"/cost/budgets", func(w http.ResponseWriter, r *http.Request) {
		var req api.BudgetRequest
		if err := decodeStrict(r.Header.Get("Content-Type"), r.Body, &req); err != nil {
			writeError(w, err)
			return
		}
		bs, err := m.SetBudget(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, bs)
	})
}
