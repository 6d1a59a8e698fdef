package cost

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The embedded copy; see catalog/refresh.sh for why it is a copy.
var (
	//go:embed catalog/catalog.csv
	catalogCSV []byte
	//go:embed catalog/fees.csv
	feesCSV []byte
	//go:embed catalog/COPIED
	copiedText string
)

// Price is one row of the instance catalog: an instance type's hourly
// price in one region, with where the number came from.
type Price struct {
	Provider     string  `json:"provider" yaml:"provider"`
	Region       string  `json:"region" yaml:"region"`
	InstanceType string  `json:"instance_type" yaml:"instance_type"`
	VCPUs        float64 `json:"vcpus" yaml:"vcpus"`           // 0 when the source does not say
	MemoryGiB    float64 `json:"memory_gib" yaml:"memory_gib"` // 0 when the source does not say
	GPU          string  `json:"gpu,omitempty" yaml:"gpu,omitempty"`
	GPUCount     float64 `json:"gpu_count,omitempty" yaml:"gpu_count,omitempty"`
	// HourlyUSD is the on-demand price; HasUSD is false for rows whose
	// source gave another currency only (kept for provenance, never used).
	HourlyUSD float64 `json:"hourly_usd" yaml:"hourly_usd"`
	HasUSD    bool    `json:"-" yaml:"-"`
	SpotUSD   float64 `json:"spot_usd,omitempty" yaml:"spot_usd,omitempty"` // 0 when none
	Unit      string  `json:"unit" yaml:"unit"`
	Source    string  `json:"source" yaml:"source"`
	// SourceDate is the date text as researched ("unknown (...)" included);
	// Date is its parsed form, zero when the source gave no date.
	SourceDate string    `json:"source_date" yaml:"source_date"`
	Date       time.Time `json:"-" yaml:"-"`
	Notes      string    `json:"-" yaml:"-"`
}

// Fee is one row of fees.csv: cluster control planes, egress, plans.
type Fee struct {
	Provider   string
	Item       string
	Price      float64 // in Unit; HasPrice false when the source gave none in USD
	HasPrice   bool
	Unit       string
	Source     string
	SourceDate string
	Date       time.Time
}

// ClusterHourly reports whether the fee is charged per cluster-hour: the
// only fees the estimator adds (egress and storage depend on use it cannot
// know beforehand).
func (f Fee) ClusterHourly() bool { return strings.Contains(f.Unit, "cluster-hour") }

// Catalog is the parsed price data.
type Catalog struct {
	Prices []Price
	Fees   []Fee
	// Copied is when the embedded copy was taken (catalog/COPIED).
	Copied time.Time
}

var catalogHeader = []string{"provider", "region", "instance_type", "vcpus", "memory_gib", "gpu", "gpu_count",
	"price_hour_usd", "spot_price_hour_usd", "unit", "source", "source_date", "notes"}

var feesHeader = []string{"provider", "item", "price_hour_usd", "unit", "source", "source_date", "notes"}

var (
	builtinOnce sync.Once
	builtin     *Catalog
	builtinErr  error
)

// Builtin returns the catalog compiled into bpm, parsed once.
func Builtin() (*Catalog, error) {
	builtinOnce.Do(func() {
		builtin, builtinErr = Parse(catalogCSV, feesCSV, copiedText)
	})
	return builtin, builtinErr
}

// Parse reads catalog.csv and fees.csv text. copied is the COPIED date text
// (YYYY-MM-DD); empty leaves Copied zero.
func Parse(catalogData, feesData []byte, copied string) (*Catalog, error) {
	c := &Catalog{}
	if s := strings.TrimSpace(copied); s != "" {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return nil, fmt.Errorf("cost: catalog COPIED %q: not a YYYY-MM-DD date", s)
		}
		c.Copied = t
	}
	var err error
	if c.Prices, err = parsePrices(catalogData); err != nil {
		return nil, err
	}
	if c.Fees, err = parseFees(feesData); err != nil {
		return nil, err
	}
	return c, nil
}

// readCSV checks the header names the columns we expect (by name, in
// order), so a reshaped research file fails the build's tests instead of
// silently pricing with the wrong column.
func readCSV(name string, data []byte, header []string, each func(line int, rec []string) error) error {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = len(header)
	first := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("cost: %s: %w", name, err)
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			for i, h := range header {
				if strings.TrimSpace(rec[i]) != h {
					return fmt.Errorf("cost: %s:%d: column %d is %q, want %q", name, line, i+1, rec[i], h)
				}
			}
			continue
		}
		if err := each(line, rec); err != nil {
			return fmt.Errorf("cost: %s:%d: %w", name, line, err)
		}
	}
	if first {
		return fmt.Errorf("cost: %s: empty (no header)", name)
	}
	return nil
}

func parsePrices(data []byte) ([]Price, error) {
	var out []Price
	err := readCSV("catalog.csv", data, catalogHeader, func(_ int, rec []string) error {
		p := Price{
			Provider: strings.TrimSpace(rec[0]), Region: strings.TrimSpace(rec[1]),
			InstanceType: strings.TrimSpace(rec[2]), GPU: rec[5], Unit: rec[9],
			Source: rec[10], SourceDate: rec[11], Notes: rec[12],
		}
		if p.Provider == "" || p.InstanceType == "" {
			return errors.New("provider and instance_type are required")
		}
		var err error
		if p.VCPUs, _, err = number("vcpus", rec[3]); err != nil {
			return err
		}
		if p.MemoryGiB, _, err = number("memory_gib", rec[4]); err != nil {
			return err
		}
		if p.GPUCount, _, err = number("gpu_count", rec[6]); err != nil {
			return err
		}
		if p.HourlyUSD, p.HasUSD, err = number("price_hour_usd", rec[7]); err != nil {
			return err
		}
		if p.SpotUSD, _, err = number("spot_price_hour_usd", rec[8]); err != nil {
			return err
		}
		p.Date = parseSourceDate(p.SourceDate)
		out = append(out, p)
		return nil
	})
	return out, err
}

func parseFees(data []byte) ([]Fee, error) {
	var out []Fee
	err := readCSV("fees.csv", data, feesHeader, func(_ int, rec []string) error {
		f := Fee{Provider: strings.TrimSpace(rec[0]), Item: rec[1], Unit: rec[3], Source: rec[4], SourceDate: rec[5]}
		if f.Provider == "" {
			return errors.New("provider is required")
		}
		var err error
		if f.Price, f.HasPrice, err = number("price_hour_usd", rec[2]); err != nil {
			return err
		}
		f.Date = parseSourceDate(f.SourceDate)
		out = append(out, f)
		return nil
	})
	return out, err
}

// number parses an optional non-negative finite decimal; empty is (0, false).
func number(field, s string) (float64, bool, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v != v || v > 1e9 {
		return 0, false, fmt.Errorf("%s %q: not a non-negative number", field, s)
	}
	return v, true, nil
}

var dateRE = regexp.MustCompile(`^(\d{4})-(\d{2})(?:-(\d{2}))?`)

// parseSourceDate reads the leading date of a source_date cell: "2026-05-27",
// "2023-10 (as of October 2023)" (taken as the 1st of the month, the
// oldest the price can be) or "unknown (...)" (zero: age unknown).
func parseSourceDate(s string) time.Time {
	m := dateRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return time.Time{}
	}
	day := m[3]
	if day == "" {
		day = "01"
	}
	t, err := time.Parse(time.DateOnly, m[1]+"-"+m[2]+"-"+day)
	if err != nil {
		return time.Time{}
	}
	return t
}

// ClusterFee returns the provider's hourly managed-cluster fee: the first
// per-cluster-hour row of fees.csv for it, which the research lists with
// the standard tier first (EKS standard before extended support).
func (c *Catalog) ClusterFee(provider string) (Fee, bool) {
	for _, f := range c.Fees {
		if f.Provider == provider && f.ClusterHourly() && f.HasPrice {
			return f, true
		}
	}
	return Fee{}, false
}

// Age describes how fresh a price is at now against maxAge.
func Age(date time.Time, now time.Time, maxAge time.Duration) (stale bool, note string) {
	if date.IsZero() {
		return true, "date unknown"
	}
	if maxAge > 0 && now.Sub(date) > maxAge {
		return true, fmt.Sprintf("older than %d days", int(maxAge.Hours()/24))
	}
	return false, ""
}
