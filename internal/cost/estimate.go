package cost

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
)

// HoursPerMonth is the month the catalog's monthly prices assume (365 ×
// 24 / 12, the figure clouds quote monthly prices with).
const HoursPerMonth = 730

const gib = 1 << 30

// Need is what one instance asks for, from its manifest.
type Need struct {
	MilliCPU int64 `json:"millicpu" yaml:"millicpu"`
	Memory   int64 `json:"memory_bytes" yaml:"memory_bytes"`
	GPU      int   `json:"gpu,omitempty" yaml:"gpu,omitempty"`
}

// NeedOf reads a manifest's [resources]. Unset CPU or memory count as
// zero: the instance then fits anywhere and is priced by what is set.
func NeedOf(r blueprint.Resources) (Need, error) {
	var n Need
	var err error
	if r.CPU != "" {
		if n.MilliCPU, err = blueprint.ParseCPU(r.CPU); err != nil {
			return n, fmt.Errorf("cost: resources: %w", err)
		}
	}
	if r.Memory != "" {
		if n.Memory, err = blueprint.ParseBytes(r.Memory); err != nil {
			return n, fmt.Errorf("cost: resources: %w", err)
		}
	}
	n.GPU = r.GPU
	return n, nil
}

// Request is one estimate's input.
type Request struct {
	Remote       string
	ProviderType string // "local", "docker", "ssh", "kubernetes"
	Need         Need
	Pricing      config.Pricing
	// ClusterInstances is how many bpm instances share the cluster fee,
	// this one included (Kubernetes only); below 1 counts as 1.
	ClusterInstances int
	Now              time.Time
	MaxAge           time.Duration // prices older than this are flagged
}

// Option is one way of pricing the instance.
type Option struct {
	Rank         int     `json:"rank" yaml:"rank"`
	Kind         string  `json:"kind" yaml:"kind"` // catalog, spot, rate-card, free
	Provider     string  `json:"provider,omitempty" yaml:"provider,omitempty"`
	Region       string  `json:"region,omitempty" yaml:"region,omitempty"`
	InstanceType string  `json:"instance_type,omitempty" yaml:"instance_type,omitempty"`
	HourlyUSD    float64 `json:"hourly_usd" yaml:"hourly_usd"`
	MonthlyUSD   float64 `json:"monthly_usd" yaml:"monthly_usd"`
	// Detail is the formula, so an operator can check the number.
	Detail     string `json:"detail" yaml:"detail"`
	Source     string `json:"source,omitempty" yaml:"source,omitempty"`
	SourceDate string `json:"source_date,omitempty" yaml:"source_date,omitempty"`
	Stale      bool   `json:"stale,omitempty" yaml:"stale,omitempty"`
	StaleNote  string `json:"stale_note,omitempty" yaml:"stale_note,omitempty"`
	// Charged marks the option bpm meters and budgets with (see Charged).
	Charged bool `json:"charged,omitempty" yaml:"charged,omitempty"`
}

// Estimate is the ranked result, cheapest first.
type Estimate struct {
	Remote       string `json:"remote" yaml:"remote"`
	ProviderType string `json:"provider" yaml:"provider"`
	Need         Need   `json:"need" yaml:"need"`
	CatalogDate  string `json:"catalog_date" yaml:"catalog_date"`
	MaxAgeDays   int    `json:"max_price_age_days" yaml:"max_price_age_days"`
	// HourlyUSD and MonthlyUSD are what bpm charges (see Charged).
	HourlyUSD  float64  `json:"hourly_usd" yaml:"hourly_usd"`
	MonthlyUSD float64  `json:"monthly_usd" yaml:"monthly_usd"`
	Options    []Option `json:"options" yaml:"options"`
	Warnings   []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// Charged is the hourly price bpm meters and budgets with: the rate card
// when the operator wrote one (it overrides the catalog), else the
// cheapest on-demand catalog type, else 0. Spot prices rank in the table
// but are never charged: bpm does not ask for spot capacity, and a budget
// checked against a price that can be outbid would be optimistic.
func (e *Estimate) Charged() float64 {
	for _, kind := range []string{"rate-card", "catalog"} {
		for _, o := range e.Options {
			if o.Kind == kind {
				return o.HourlyUSD
			}
		}
	}
	return 0
}

// Estimate prices one instance of req.Need on req's remote:
//
//   - local, or any remote with no pricing: $0 (the operator already pays
//     for the machine), unless a rate card says otherwise;
//   - a rate card: vcpu_hour × vCPUs + gib_hour × GiB + instance_hour +
//     monthly_fixed / 730;
//   - docker or ssh naming cloud+region: every catalog type there that
//     fits (vCPUs, memory, GPUs), on-demand and spot, as if the instance had
//     the machine to itself;
//   - kubernetes naming cloud+region: the instance's share of one node,
//     share = max(millicpu / node millicpu, memory / node memory) (the
//     dominant resource, which is what the scheduler reserves), times the
//     node's price, plus cluster fee / ClusterInstances.
//
// Options are ranked by hourly price, ties by kind and type, so the table
// is stable.
func (c *Catalog) Estimate(req Request) *Estimate {
	e := &Estimate{
		Remote: req.Remote, ProviderType: req.ProviderType, Need: req.Need,
		MaxAgeDays: int(req.MaxAge.Hours() / 24),
	}
	if !c.Copied.IsZero() {
		e.CatalogDate = c.Copied.Format(time.DateOnly)
	}
	pr := req.Pricing
	k8s := req.ProviderType == "kubernetes"
	share := req.ClusterInstances
	if share < 1 {
		share = 1
	}
	clusterFee, feeNote := 0.0, ""
	if k8s {
		switch f, ok := c.ClusterFee(pr.Cloud); {
		case pr.ClusterFeeHour > 0:
			clusterFee, feeNote = pr.ClusterFeeHour, "cluster_fee_hour (rate card)"
		case ok:
			clusterFee, feeNote = f.Price, f.Item
		}
	}
	feeShare := clusterFee / float64(share)
	feeText := ""
	if feeShare > 0 {
		feeText = fmt.Sprintf(" + %s %.4g/h ÷ %d instances", feeNote, clusterFee, share)
	}

	if pr.HasRateCard() {
		cpus := float64(req.Need.MilliCPU) / 1000
		mem := float64(req.Need.Memory) / gib
		h := pr.VCPUHour*cpus + pr.GiBHour*mem + pr.InstanceHour + pr.MonthlyFixed/HoursPerMonth + feeShare
		e.add(Option{Kind: "rate-card", HourlyUSD: h,
			Detail: fmt.Sprintf("%.4g/vCPU-h × %.3g + %.4g/GiB-h × %.3g + %.4g/h + %.4g/month ÷ 730%s",
				pr.VCPUHour, cpus, pr.GiBHour, mem, pr.InstanceHour, pr.MonthlyFixed, feeText)})
	}
	if pr.Cloud != "" && req.ProviderType != "local" {
		n := 0
		for i := range c.Prices {
			p := &c.Prices[i]
			if p.Provider != pr.Cloud || p.Region != pr.Region || !p.HasUSD {
				continue
			}
			if pr.NodeType != "" && p.InstanceType != pr.NodeType {
				continue
			}
			if !fits(p, req.Need) {
				continue
			}
			n++
			stale, note := Age(p.Date, req.Now, req.MaxAge)
			o := Option{Kind: "catalog", Provider: p.Provider, Region: p.Region, InstanceType: p.InstanceType,
				Source: p.Source, SourceDate: p.SourceDate, Stale: stale, StaleNote: note}
			frac, fracText := 1.0, ""
			if k8s {
				frac = nodeShare(p, req.Need)
				fracText = fmt.Sprintf(" × node share %.3g", frac)
			}
			o.HourlyUSD = p.HourlyUSD*frac + feeShare
			o.Detail = fmt.Sprintf("%s on-demand %.4g/h%s%s", p.InstanceType, p.HourlyUSD, fracText, feeText)
			e.add(o)
			if p.SpotUSD > 0 {
				o.Kind = "spot"
				o.HourlyUSD = p.SpotUSD*frac + feeShare
				o.Detail = fmt.Sprintf("%s spot %.4g/h (point-in-time, may be reclaimed)%s%s", p.InstanceType, p.SpotUSD, fracText, feeText)
				e.add(o)
			}
		}
		if n == 0 {
			e.Warnings = append(e.Warnings, fmt.Sprintf("no catalog instance type in %s %s fits %s", pr.Cloud, pr.Region, req.Need))
		}
	}
	if len(e.Options) == 0 {
		why := "no pricing configured for this remote"
		if req.ProviderType == "local" || req.Remote == "local" {
			why = "this machine: the operator already pays for it"
		}
		e.add(Option{Kind: "free", Detail: why})
		if req.ProviderType != "local" && req.Remote != "local" && pr.Cloud == "" {
			e.Warnings = append(e.Warnings, fmt.Sprintf("remote %q has no [remote.%s.pricing]; its instances count as $0", req.Remote, req.Remote))
		}
	}
	slices.SortStableFunc(e.Options, func(a, b Option) int {
		return cmp.Or(cmp.Compare(a.HourlyUSD, b.HourlyUSD), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.InstanceType, b.InstanceType))
	})
	charged := e.Charged()
	marked := false
	for i := range e.Options {
		o := &e.Options[i]
		o.Rank = i + 1
		if !marked && o.Kind != "spot" && o.HourlyUSD == charged && (o.Kind == "rate-card" || !pr.HasRateCard()) {
			o.Charged, marked = true, true
		}
	}
	e.HourlyUSD = charged
	e.MonthlyUSD = math.Round(charged*HoursPerMonth*100) / 100
	return e
}

func (e *Estimate) add(o Option) {
	// Round to a hundredth of a cent per hour: the catalog is no more
	// precise, and it keeps golden files readable.
	o.HourlyUSD = math.Round(o.HourlyUSD*1e6) / 1e6
	o.MonthlyUSD = math.Round(o.HourlyUSD*HoursPerMonth*100) / 100
	e.Options = append(e.Options, o)
}

// fits reports whether the row is big enough. A row whose source gave no
// vCPU or memory figure fits only a need that asks for none of it: better
// to leave it out than to place a workload on a machine of unknown size.
func fits(p *Price, n Need) bool {
	if float64(n.MilliCPU) > p.VCPUs*1000 || float64(n.Memory) > p.MemoryGiB*gib {
		return false
	}
	return float64(n.GPU) <= p.GPUCount
}

// nodeShare is the fraction of the node the instance reserves; a need of
// nothing still takes a nominal 1/100 so that it is never free.
func nodeShare(p *Price, n Need) float64 {
	var s float64
	if p.VCPUs > 0 {
		s = max(s, float64(n.MilliCPU)/(p.VCPUs*1000))
	}
	if p.MemoryGiB > 0 {
		s = max(s, float64(n.Memory)/(p.MemoryGiB*gib))
	}
	if n.GPU > 0 && p.GPUCount > 0 {
		s = max(s, float64(n.GPU)/p.GPUCount)
	}
	return min(1, max(s, 0.01))
}

func (n Need) String() string {
	s := fmt.Sprintf("%g vCPU, %.3g GiB", float64(n.MilliCPU)/1000, float64(n.Memory)/gib)
	if n.GPU > 0 {
		s += fmt.Sprintf(", %d GPU", n.GPU)
	}
	return s
}
