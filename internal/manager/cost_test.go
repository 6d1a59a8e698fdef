package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/cost"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
)

// simClock is a settable clock: the meter is tested over a simulated
// month without sleeping.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func costs(t *testing.T, f *fixture, remote string) cost.Report {
	t.Helper()
	var r cost.Report
	if err := f.client.Costs(context.Background(), remote, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) < 0.01 }

var nov1 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func day(d float64) time.Time { return nov1.Add(time.Duration(d * 24 * float64(time.Hour))) }

// TestMeterSimulatedMonthWithRestarts runs a real local instance at $1/h
// (a [cost.local] rate card) through a simulated November: ten days, a
// manager crash whose last heartbeat was day 10 and restart on day 12,
// a clean restart on day 15, terminate on day 20, then December.
func TestMeterSimulatedMonthWithRestarts(t *testing.T) {
	f := newFixtureConfig(t, "[cost.local]\ninstance_hour = 1.0\n")
	f.terminateAll()
	clock := &simClock{t: nov1}
	f.startClocked(clock)
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, f.client, inst.ID, "running")

	clock.set(day(10))
	r := costs(t, f, "")
	if !near(r.Total.MonthToDateUSD, 240) || !near(r.Total.ForecastUSD, 720) || r.Month != "2026-11" {
		t.Fatalf("day 10: mtd %v forecast %v (%s), want 240, 720", r.Total.MonthToDateUSD, r.Total.ForecastUSD, r.Month)
	}
	if len(r.Instances) != 1 || r.Instances[0].Instance != inst.ID || r.Instances[0].Blueprint != "svc" ||
		len(r.Remotes) != 1 || r.Remotes[0].Remote != "local" || len(r.Services) != 1 || *r.Services[0].ServiceID != 1 {
		t.Fatalf("day 10 groups: %+v", r)
	}
	f.m.CostTick(ctx) // the health loop's heartbeat: alive at day 10

	// Crash: the manager goes away (the meter never hears of it) and
	// comes back on day 12. Day 10 to 12 is unwatched and not charged.
	clock.set(day(12))
	f.stop()
	f.startClocked(clock)
	clock.set(day(15))
	if r := costs(t, f, ""); !near(r.Total.MonthToDateUSD, 240+3*24) {
		t.Fatalf("day 15 after crash: mtd %v, want %v", r.Total.MonthToDateUSD, 240+3*24)
	}
	f.m.CostTick(ctx)
	// A clean restart on day 15 at once: nothing lost, nothing doubled.
	f.stop()
	f.startClocked(clock)
	clock.set(day(20))
	if r := costs(t, f, ""); !near(r.Total.MonthToDateUSD, 240+8*24) || !near(r.Total.ForecastUSD, 240+18*24) {
		t.Fatalf("day 20: mtd %v forecast %v, want %v, %v", r.Total.MonthToDateUSD, r.Total.ForecastUSD, 240+8*24, 240+18*24)
	}
	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	clock.set(day(25))
	if r := costs(t, f, ""); !near(r.Total.MonthToDateUSD, 432) || !near(r.Total.ForecastUSD, 432) || r.Total.HourlyUSD != 0 {
		t.Fatalf("day 25 after terminate: %+v, want 432 both", r.Total)
	}
	if r := costs(t, f, "local"); !near(r.Total.MonthToDateUSD, 432) {
		t.Fatalf("--remote local: %+v", r.Total)
	}
	clock.set(day(31)) // December 1st
	if r := costs(t, f, ""); r.Month != "2026-12" || r.Total.MonthToDateUSD != 0 {
		t.Fatalf("December: %+v", r)
	}
}

// TestFailedLaunchCostsNothing: a deploy that never reaches running opens
// no interval.
func TestFailedLaunchCostsNothing(t *testing.T) {
	f := newFixtureConfig(t, "[cost.local]\ninstance_hour = 1.0\n")
	f.terminateAll()
	f.override = func(o *local.Options) { o.Executable = local.StaticExecutable(f.root + "/no-such-binary") }
	clock := &simClock{t: nov1}
	f.startClocked(clock)
	dir, _ := f.writePackage("http")
	if _, err := f.client.Deploy(ctxT(t), api.DeployRequest{PackagePath: dir}); err == nil {
		t.Fatal("deploy of a missing binary succeeded")
	}
	clock.set(day(3))
	if r := costs(t, f, ""); r.Total.MonthToDateUSD != 0 || len(r.Instances) != 0 {
		t.Fatalf("failed launch costs %+v", r)
	}
}

// TestBudgetRefusalForceAndWebhook: over the budget a deploy is refused
// (ErrQuota, exit 8) and leaves no row; --force deploys; the spend then
// crosses 50% and 80% and a real HTTP server gets each crossing exactly
// once, the first only after a 500, across a manager restart.
func TestBudgetRefusalForceAndWebhook(t *testing.T) {
	var mu sync.Mutex
	attempts := map[int]int{}
	delivered := map[int]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a struct {
			ThresholdPct int    `json:"threshold_pct"`
			Key          string `json:"idempotency_key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil || r.Method != http.MethodPost || a.Key == "" {
			http.Error(w, "bad alert", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		attempts[a.ThresholdPct]++
		if a.ThresholdPct == 50 && attempts[50] == 1 {
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		delivered[a.ThresholdPct]++
	}))
	defer srv.Close()

	f := newFixtureConfig(t, "[cost.local]\ninstance_hour = 1.0\n")
	f.terminateAll()
	clock := &simClock{t: nov1}
	f.startClocked(clock)
	ctx := ctxT(t)
	var bs []cost.Budget
	if err := f.client.SetBudget(ctx, api.BudgetRequest{MonthlyLimitUSD: 100, Webhook: srv.URL}, &bs); err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Scope != cost.GlobalScope || len(bs[0].Thresholds) != 3 {
		t.Fatalf("budgets %+v", bs)
	}
	dir, _ := f.writePackage("http")
	_, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if !errors.Is(err, provider.ErrQuota) {
		t.Fatalf("over-budget deploy: %v, want ErrQuota", err)
	}
	if list, _ := f.client.List(ctx, api.ListOptions{All: true}); len(list) != 0 {
		t.Fatalf("a refused deploy recorded %+v", list)
	}
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, f.client, inst.ID, "running")

	clock.set(nov1.Add(55 * time.Hour)) // $55: past 50%
	f.m.CostTick(ctx)
	f.m.CostTick(ctx) // checked again: already recorded, not re-sent
	f.m.WaitAlerts()
	f.stop()
	f.startClocked(clock) // a restart re-sends nothing delivered
	f.m.CostTick(ctx)
	clock.set(nov1.Add(85 * time.Hour)) // $85: past 80%
	f.m.CostTick(ctx)
	f.m.WaitAlerts()

	mu.Lock()
	defer mu.Unlock()
	if attempts[50] != 2 || delivered[50] != 1 || delivered[80] != 1 || attempts[80] != 1 || delivered[100] != 0 {
		t.Fatalf("attempts %v delivered %v; want 50%% twice (500 then 200) and once each delivered, 80%% once", attempts, delivered)
	}
}

// TestStopAtLimit: stopping instances at 100% of a budget is opt-in. With
// it off (the default) an instance past its budget keeps running; with it
// on, the crossing terminates the budget's instances.
func TestStopAtLimit(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[stop], func(t *testing.T) {
			f := newFixtureConfig(t, "[cost.local]\ninstance_hour = 1.0\n")
			f.terminateAll()
			clock := &simClock{t: nov1}
			f.startClocked(clock)
			ctx := ctxT(t)
			var bs []cost.Budget
			if err := f.client.SetBudget(ctx, api.BudgetRequest{MonthlyLimitUSD: 10, StopAtLimit: stop}, &bs); err != nil {
				t.Fatal(err)
			}
			dir, _ := f.writePackage("http")
			inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir, Force: true})
			if err != nil {
				t.Fatal(err)
			}
			waitState(t, f.client, inst.ID, "running")
			clock.set(nov1.Add(5 * time.Hour)) // $5: under the limit
			f.m.CostTick(ctx)
			if d, _ := f.client.Status(ctx, inst.ID); d.State != "running" {
				t.Fatalf("at $5 of $10: %s", d.State)
			}
			clock.set(nov1.Add(11 * time.Hour)) // $11: past 100%
			f.m.CostTick(ctx)
			d, err := f.client.Status(ctx, inst.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := "running"
			if stop {
				want = "terminated"
			}
			if d.State != want {
				t.Fatalf("stop_at_limit=%v at $11 of $10: state %s, want %s", stop, d.State, want)
			}
		})
	}
}
