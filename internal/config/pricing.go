package config

import (
	"fmt"
	"math"
	"regexp"
	"time"
)

// Pricing is the [remote.NAME.pricing] sub-table every remote provider
// shares: how bpm prices instances there. Cloud and Region pick rows of
// the built-in catalog; the rates are the operator's own rate card, for a
// self-managed host or cluster or to override the catalog. All amounts are
// USD.
type Pricing struct {
	// Cloud and Region name catalog rows (for example "aws", "us-east-1").
	Cloud  string `toml:"cloud"`
	Region string `toml:"region"`
	// NodeType is the catalog instance type of a Kubernetes cluster's
	// nodes; an instance is priced as its share of one. Empty prices every
	// type that fits and ranks them.
	NodeType string `toml:"node_type"`
	// Rate card. Any non-zero rate makes the rate card an option, ranked
	// with the catalog's.
	VCPUHour       float64 `toml:"vcpu_hour"`
	GiBHour        float64 `toml:"gib_hour"`
	InstanceHour   float64 `toml:"instance_hour"`
	MonthlyFixed   float64 `toml:"monthly_fixed"`    // added to every instance, per month
	ClusterFeeHour float64 `toml:"cluster_fee_hour"` // Kubernetes: overrides the catalog's fee
	// Confirm is whether deploy asks before spending money here. Default
	// true; false lets scripts deploy without --yes.
	Confirm *bool `toml:"confirm"`
}

// HasRateCard reports whether any rate is set.
func (p Pricing) HasRateCard() bool {
	return p.VCPUHour != 0 || p.GiBHour != 0 || p.InstanceHour != 0 || p.MonthlyFixed != 0
}

// ConfirmSpend reports the remote's policy: ask before spending (the
// default) or not.
func (p Pricing) ConfirmSpend() bool { return p.Confirm == nil || *p.Confirm }

var pricingNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate checks the sub-table; field paths are relative to it.
func (p *Pricing) Validate() error {
	var fe FieldErrors
	rates := []struct {
		key string
		v   float64
	}{
		{"vcpu_hour", p.VCPUHour}, {"gib_hour", p.GiBHour}, {"instance_hour", p.InstanceHour},
		{"monthly_fixed", p.MonthlyFixed}, {"cluster_fee_hour", p.ClusterFeeHour},
	}
	for _, r := range rates {
		// A negative rate would let a budget be "earned back"; a huge one
		// is a typo (cents for dollars) that would refuse every deploy.
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) || r.v > 1e6 {
			fe.Add(r.key, "%v: must be a USD amount from 0 to 1000000", r.v)
		}
	}
	if p.Cloud != "" && !pricingNameRE.MatchString(p.Cloud) {
		fe.Add("cloud", "%q is not a cloud name (for example aws, gcp, azure)", p.Cloud)
	}
	if p.Region != "" && p.Cloud == "" {
		fe.Add("region", "set cloud too: a region means nothing without its cloud")
	}
	if p.Cloud != "" && p.Region == "" {
		fe.Add("region", "must be set with cloud (for example us-east-1)")
	}
	if p.NodeType != "" && p.Cloud == "" {
		fe.Add("node_type", "set cloud and region too: node_type names a catalog row")
	}
	return fe.Err()
}

// Cost is the [cost] section.
type Cost struct {
	// MaxPriceAge is how old a catalog price may be before estimate-cost
	// flags it, as a Go duration or a number of days ("180d"). Default
	// 180 days.
	MaxPriceAge string `toml:"max_price_age"`
	// Local is the rate card of this machine ([cost.local]), which has no
	// [remote] section of its own. Empty: local instances cost $0, since
	// the operator already pays for the machine.
	Local Pricing `toml:"local"`
}

// MaxPriceAgeDuration returns MaxPriceAge parsed; validated at load.
func (c Cost) MaxPriceAgeDuration() time.Duration {
	d, _ := ParseDays(c.MaxPriceAge)
	return d
}

func (c *Cost) applyDefaults() {
	if c.MaxPriceAge == "" {
		c.MaxPriceAge = "180d"
	}
}

// Validate checks the section.
func (c *Cost) Validate() error {
	var fe FieldErrors
	if d, err := ParseDays(c.MaxPriceAge); err != nil || d <= 0 {
		fe.Add("max_price_age", "%q is not a positive age (for example 180d or 4320h)", c.MaxPriceAge)
	}
	if c.Local.Cloud != "" || c.Local.NodeType != "" || c.Local.ClusterFeeHour != 0 {
		fe.Add("local", "this machine takes a rate card only (vcpu_hour, gib_hour, instance_hour, monthly_fixed, confirm)")
	}
	fe.Nest("local", c.Local.Validate())
	return fe.Err()
}

// ParseDays parses "N d" (days, which time.ParseDuration lacks) or a Go
// duration.
func ParseDays(s string) (time.Duration, error) {
	var n int
	var unit string
	if k, err := fmt.Sscanf(s, "%d%s", &n, &unit); err == nil && k == 2 && unit == "d" {
		if n < 0 || n > 100000 {
			return 0, fmt.Errorf("%q: out of range", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
