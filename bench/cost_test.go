package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/cost"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// BenchmarkEstimate prices one instance (1 vCPU, 2 GiB) in every
// cloud/region of the embedded catalog per op, as Kubernetes (node share
// plus cluster fee, the most arithmetic), so every catalog row is looked
// at:
//
//	BenchmarkEstimate/baseline  a bare scan for the cheapest fitting row
//	BenchmarkEstimate/bpm       cost.Catalog.Estimate for every region
//
// Target (issue 9): an estimate over the whole catalog ≤ 5 ms.
func BenchmarkEstimate(b *testing.B) {
	cat, err := cost.Builtin()
	if err != nil {
		b.Fatal(err)
	}
	type region struct{ cloud, region string }
	var regions []region
	seen := map[region]bool{}
	for _, p := range cat.Prices {
		r := region{p.Provider, p.Region}
		if !seen[r] {
			seen[r] = true
			regions = append(regions, r)
		}
	}
	need := cost.Need{MilliCPU: 1000, Memory: 2 << 30}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			for _, r := range regions {
				best := -1.0
				for _, p := range cat.Prices {
					if p.Provider == r.cloud && p.Region == r.region && p.HasUSD && p.VCPUs >= 1 && p.MemoryGiB >= 2 &&
						(best < 0 || p.HourlyUSD < best) {
						best = p.HourlyUSD
					}
				}
			}
		}
	})
	b.Run("bpm", func(b *testing.B) {
		now := time.Now()
		for b.Loop() {
			for _, r := range regions {
				cat.Estimate(cost.Request{Remote: r.cloud, ProviderType: "kubernetes", Need: need, ClusterInstances: 3,
					Pricing: config.Pricing{Cloud: r.cloud, Region: r.region}, Now: now, MaxAge: 180 * 24 * time.Hour})
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/catalog")
	})
}

// BenchmarkCosts10k builds `bpm costs` over 10,000 instances' history
// (three intervals each this month, one still open, plus last month's)
// in a real state database:
//
//	BenchmarkCosts10k/baseline  scan this month's intervals, sum in SQL-order
//	BenchmarkCosts10k/bpm       the same scan through cost.Summary, grouped
//	                            per remote, blueprint, service and instance
//
// Target (issue 9): ≤ 100 ms.
func BenchmarkCosts10k(b *testing.B) {
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	start := cost.MonthStart(now)
	infos := map[string]state.Instance{}
	remotes := []string{"local", "aws", "gke", "lab"}
	for i := 0; i < 10000; i++ {
		in := state.Instance{ID: "bp-" + itoa36(i), Remote: remotes[i%4], ProviderType: "kubernetes",
			BlueprintName: "bp" + itoa36(i%50), BlueprintID: uint64(i % 50), ServiceID: uint64(i),
			PackagePath: "/p", State: provider.StateRunning}
		if err := st.CreateInstance(ctx, in); err != nil {
			b.Fatal(err)
		}
		infos[in.ID] = in
		t0 := start.Add(-48 * time.Hour)
		for k := 0; k < 4; k++ { // one last month, three this month
			if _, err := st.OpenInterval(ctx, in.ID, t0, 0.05); err != nil {
				b.Fatal(err)
			}
			if k < 3 {
				if err := st.CloseInterval(ctx, in.ID, t0.Add(24*time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			t0 = t0.Add(96 * time.Hour)
		}
	}
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			var sum float64
			if err := st.EachInterval(ctx, start, func(iv state.Interval) error { sum += iv.HourlyUSD; return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bpm", func(b *testing.B) {
		var r *cost.Report
		for b.Loop() {
			s := cost.NewSummary(now)
			if err := st.EachInterval(ctx, start, func(iv state.Interval) error { s.Add(iv); return nil }); err != nil {
				b.Fatal(err)
			}
			r = s.Report(func(id string) (state.Instance, bool) { in, ok := infos[id]; return in, ok })
		}
		if len(r.Instances) != 10000 || len(r.Remotes) != 4 {
			b.Fatalf("report has %d instances, %d remotes", len(r.Instances), len(r.Remotes))
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/report")
	})
}

func itoa36(i int) string {
	const digits = "0123456789abcdefghijklmnopqrstuv"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 32 {
		b = append([]byte{digits[i%32]}, b...)
	}
	return string(b)
}
