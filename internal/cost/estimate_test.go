package cost

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testNow = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

func builtinT(t testing.TB) *Catalog {
	t.Helper()
	c, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func need(t testing.TB, cpu, mem string, gpu int) Need {
	t.Helper()
	n, err := NeedOf(blueprint.Resources{CPU: cpu, Memory: mem, GPU: gpu})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestEstimateGolden prices one manifest's resources on each provider
// type, against catalog rows and rate cards, and compares the whole ranked
// result with a golden file.
func TestEstimateGolden(t *testing.T) {
	c := builtinT(t)
	f := false
	cases := []struct {
		name string
		req  Request
	}{
		{"local", Request{Remote: "local", ProviderType: "local", Need: need(t, "2", "4Gi", 0)}},
		{"local-rate-card", Request{Remote: "local", ProviderType: "local", Need: need(t, "2", "4Gi", 0),
			Pricing: config.Pricing{InstanceHour: 0.01}}},
		{"docker-aws-us-east-1", Request{Remote: "aws", ProviderType: "docker", Need: need(t, "2", "4Gi", 0),
			Pricing: config.Pricing{Cloud: "aws", Region: "us-east-1"}}},
		{"docker-aws-gpu", Request{Remote: "aws", ProviderType: "docker", Need: need(t, "4", "16Gi", 1),
			Pricing: config.Pricing{Cloud: "aws", Region: "us-east-1"}}},
		{"docker-digitalocean", Request{Remote: "do", ProviderType: "docker", Need: need(t, "500m", "1Gi", 0),
			Pricing: config.Pricing{Cloud: "digitalocean", Region: "nyc1"}}},
		{"docker-no-pricing", Request{Remote: "box", ProviderType: "docker", Need: need(t, "1", "1Gi", 0)}},
		{"ssh-rate-card", Request{Remote: "lab", ProviderType: "ssh", Need: need(t, "1500m", "3Gi", 0),
			Pricing: config.Pricing{VCPUHour: 0.02, GiBHour: 0.005, MonthlyFixed: 7.3, Confirm: &f}}},
		{"ssh-hetzner", Request{Remote: "hz", ProviderType: "ssh", Need: need(t, "2", "4Gi", 0),
			Pricing: config.Pricing{Cloud: "hetzner", Region: "fsn1"}}},
		{"kubernetes-eks-node", Request{Remote: "aws", ProviderType: "kubernetes", Need: need(t, "1", "2Gi", 0),
			ClusterInstances: 4, Pricing: config.Pricing{Cloud: "aws", Region: "us-east-1", NodeType: "m6i.xlarge"}}},
		{"kubernetes-gke-all-nodes", Request{Remote: "gke", ProviderType: "kubernetes", Need: need(t, "500m", "8Gi", 0),
			ClusterInstances: 2, Pricing: config.Pricing{Cloud: "gcp", Region: "us-central1"}}},
		{"kubernetes-rate-card", Request{Remote: "lab-k8s", ProviderType: "kubernetes", Need: need(t, "2", "4Gi", 0),
			ClusterInstances: 10, Pricing: config.Pricing{VCPUHour: 0.03, GiBHour: 0.004, ClusterFeeHour: 0.5}}},
		{"kubernetes-no-fit", Request{Remote: "aws", ProviderType: "kubernetes", Need: need(t, "64", "1Ti", 0),
			Pricing: config.Pricing{Cloud: "aws", Region: "eu-west-1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Now = testNow
			tc.req.MaxAge = 180 * 24 * time.Hour
			checkGolden(t, "estimate-"+tc.name, c.Estimate(tc.req))
		})
	}
}

// TestEstimateArithmetic checks the documented formulas against hand
// arithmetic on catalog rows, independently of the golden files.
func TestEstimateArithmetic(t *testing.T) {
	c := builtinT(t)
	// m6i.xlarge us-east-1 is 0.192/h for 4 vCPU 16 GiB; 1 vCPU 2 GiB is a
	// quarter of the CPU and an eighth of the memory: share 0.25. EKS is
	// 0.10/h shared by 4 instances.
	e := c.Estimate(Request{Remote: "aws", ProviderType: "kubernetes", Need: Need{MilliCPU: 1000, Memory: 2 * gib},
		ClusterInstances: 4, Pricing: config.Pricing{Cloud: "aws", Region: "us-east-1", NodeType: "m6i.xlarge"}, Now: testNow})
	var od *Option
	for i := range e.Options {
		if e.Options[i].Kind == "catalog" {
			od = &e.Options[i]
		}
	}
	if od == nil {
		t.Fatalf("no catalog option: %+v", e)
	}
	if want := 0.192*0.25 + 0.10/4; od.HourlyUSD != want {
		t.Errorf("hourly = %v, want %v", od.HourlyUSD, want)
	}
	if od.MonthlyUSD != 53.29 { // 0.073 × 730
		t.Errorf("monthly = %v, want 53.29", od.MonthlyUSD)
	}
	// The cheapest fitting on-demand type for 2 vCPU 4 GiB in us-east-1 is
	// t3.medium at 0.0416.
	e = c.Estimate(Request{Remote: "aws", ProviderType: "docker", Need: Need{MilliCPU: 2000, Memory: 4 * gib},
		Pricing: config.Pricing{Cloud: "aws", Region: "us-east-1"}})
	for _, o := range e.Options {
		if o.Kind == "catalog" {
			if o.InstanceType != "t3.medium" || o.HourlyUSD != 0.0416 {
				t.Errorf("cheapest on-demand = %s %v, want t3.medium 0.0416", o.InstanceType, o.HourlyUSD)
			}
			break
		}
	}
}

func TestCatalogProvenance(t *testing.T) {
	c := builtinT(t)
	if len(c.Prices) < 100 || len(c.Fees) < 10 {
		t.Fatalf("catalog has %d prices, %d fees", len(c.Prices), len(c.Fees))
	}
	if c.Copied.IsZero() {
		t.Error("catalog has no COPIED date")
	}
	for _, p := range c.Prices {
		if p.Source == "" || p.SourceDate == "" {
			t.Errorf("%s %s %s: no source or date", p.Provider, p.Region, p.InstanceType)
		}
	}
	if f, ok := c.ClusterFee("aws"); !ok || f.Price != 0.10 {
		t.Errorf("EKS fee = %+v", f)
	}
	stale, note := Age(parseSourceDate("2023-10 (as of October 2023)"), testNow, 180*24*time.Hour)
	if !stale || note != "older than 180 days" {
		t.Errorf("2023-10 at %v: %v %q", testNow, stale, note)
	}
	if stale, _ := Age(parseSourceDate("2026-09-01"), testNow, 180*24*time.Hour); stale {
		t.Error("a 2½-month-old price is flagged")
	}
	if stale, note := Age(parseSourceDate("unknown (commit date not retrievable here)"), testNow, 0); !stale || note != "date unknown" {
		t.Errorf("unknown date: %v %q", stale, note)
	}
}

func FuzzParseCatalog(f *testing.F) {
	f.Add(catalogCSV, feesCSV, "2026-11-28")
	f.Add([]byte("provider,region,instance_type,vcpus,memory_gib,gpu,gpu_count,price_hour_usd,spot_price_hour_usd,unit,source,source_date,notes\naws,x,y,1,2,,,0.1,,u,s,2024-01,n\n"),
		[]byte("provider,item,price_hour_usd,unit,source,source_date,notes\n"), "")
	f.Add([]byte("a,b\n"), []byte(""), "bad")
	f.Fuzz(func(t *testing.T, cat, fees []byte, copied string) {
		c, err := Parse(cat, fees, copied)
		if err != nil {
			return
		}
		for _, p := range c.Prices {
			if p.HourlyUSD < 0 || p.VCPUs < 0 || p.MemoryGiB < 0 || p.HourlyUSD != p.HourlyUSD {
				t.Fatalf("accepted a negative or NaN number: %+v", p)
			}
		}
		// Whatever parses must estimate without panicking.
		c.Estimate(Request{ProviderType: "kubernetes", Need: Need{MilliCPU: 1000, Memory: gib},
			Pricing: config.Pricing{Cloud: "aws", Region: "x"}})
	})
}

// FuzzRateCard feeds arbitrary [remote.X.pricing] tables through the real
// config loader: the loader must never panic, and what it accepts must
// price to a finite, non-negative amount.
func FuzzRateCard(f *testing.F) {
	f.Add("vcpu_hour = 0.01\ngib_hour = 0.002\nmonthly_fixed = 5\n")
	f.Add("cloud = \"aws\"\nregion = \"us-east-1\"\nnode_type = \"m6i.xlarge\"\ncluster_fee_hour = 0.1\nconfirm = false\n")
	f.Add("vcpu_hour = -1\n")
	f.Add("vcpu_hour = nan\n")
	f.Fuzz(func(t *testing.T, body string) {
		doc := "[remote.k]\ntype = \"kubernetes\"\n[remote.k.pricing]\n" + body
		cfg, err := config.Parse([]byte(doc), "c.toml", config.LoadOptions{
			Getenv: func(string) (string, bool) { return "", false }, Home: "/h", BaseDir: "/etc/bpm"})
		if err != nil {
			return
		}
		pr, ok := PricingOf(cfg.Remotes["k"])
		if !ok {
			t.Fatal("accepted remote has no pricing")
		}
		e := builtinT(t).Estimate(Request{ProviderType: "kubernetes", Need: Need{MilliCPU: 1500, Memory: 3 * gib}, Pricing: pr})
		for _, o := range e.Options {
			if o.HourlyUSD < 0 || o.HourlyUSD != o.HourlyUSD || o.HourlyUSD > 1e12 {
				t.Fatalf("priced %v from %q", o.HourlyUSD, body)
			}
		}
	})
}
