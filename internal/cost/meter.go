package cost

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/state"
)

// Months are calendar months in UTC: a budget resets at the same instant
// wherever the operator and their remotes are.

// MonthStart returns the first instant of t's month (UTC).
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// MonthEnd returns the first instant of the next month (UTC).
func MonthEnd(t time.Time) time.Time { return MonthStart(t).AddDate(0, 1, 0) }

// HoursLeft is how many hours remain in t's month.
func HoursLeft(t time.Time) float64 { return MonthEnd(t).Sub(t).Hours() }

// Line is one row of a cost report: a total over some group.
type Line struct {
	Remote    string  `json:"remote,omitempty" yaml:"remote,omitempty"`
	Blueprint string  `json:"blueprint,omitempty" yaml:"blueprint,omitempty"`
	ServiceID *uint64 `json:"service_id,omitempty" yaml:"service_id,omitempty"`
	Instance  string  `json:"instance,omitempty" yaml:"instance,omitempty"`
	// HourlyUSD is what the group's running instances cost per hour now.
	HourlyUSD float64 `json:"hourly_usd" yaml:"hourly_usd"`
	// MonthToDateUSD is accrued from the intervals run this month.
	MonthToDateUSD float64 `json:"month_to_date_usd" yaml:"month_to_date_usd"`
	// ForecastUSD is month to date plus what running instances will cost
	// if they keep running to the month's end.
	ForecastUSD float64 `json:"forecast_usd" yaml:"forecast_usd"`
}

// Report is `bpm costs`.
type Report struct {
	Month      string    `json:"month" yaml:"month"` // YYYY-MM, UTC
	Now        time.Time `json:"now" yaml:"now"`
	HoursLeft  float64   `json:"hours_left" yaml:"hours_left"`
	Total      Line      `json:"total" yaml:"total"`
	Remotes    []Line    `json:"remotes" yaml:"remotes"`
	Blueprints []Line    `json:"blueprints" yaml:"blueprints"`
	Services   []Line    `json:"services" yaml:"services"`
	Instances  []Line    `json:"instances" yaml:"instances"`
}

// Summary accumulates intervals into a Report.
type Summary struct {
	now, start time.Time
	left       float64
	byInst     map[string]*Line
}

// NewSummary starts a report of now's month.
func NewSummary(now time.Time) *Summary {
	now = now.UTC()
	return &Summary{now: now, start: MonthStart(now), left: HoursLeft(now), byInst: map[string]*Line{}}
}

// Add counts one interval. Only the part inside this month and before now
// accrues; an open interval also runs on to the month's end in the
// forecast.
func (s *Summary) Add(iv state.Interval) {
	l := s.byInst[iv.InstanceID]
	if l == nil {
		l = &Line{Instance: iv.InstanceID}
		s.byInst[iv.InstanceID] = l
	}
	from := iv.Start
	if from.Before(s.start) {
		from = s.start
	}
	to := s.now
	if iv.End != nil && iv.End.Before(to) {
		to = *iv.End
	}
	if to.After(from) {
		l.MonthToDateUSD += to.Sub(from).Hours() * iv.HourlyUSD
	}
	if iv.End == nil {
		l.HourlyUSD += iv.HourlyUSD
		l.ForecastUSD += iv.HourlyUSD * s.left
	}
}

// Report groups the instances' totals by remote, blueprint and service.
// info describes the instances by id; one it does not know is reported
// under its id alone.
func (s *Summary) Report(info func(id string) (state.Instance, bool)) *Report {
	r := &Report{Month: s.start.Format("2006-01"), Now: s.now, HoursLeft: round(s.left, 2)}
	type svcKey struct {
		bp  string
		sid uint64
		ok  bool
	}
	remotes, bps, svcs := map[string]*Line{}, map[string]*Line{}, map[svcKey]*Line{}
	for id, l := range s.byInst {
		l.ForecastUSD += l.MonthToDateUSD
		if in, ok := info(id); ok {
			l.Remote, l.Blueprint = in.Remote, in.BlueprintName
			sid := in.ServiceID
			l.ServiceID = &sid
		}
		group(remotes, l.Remote, l, func(g *Line) { g.Remote = l.Remote })
		group(bps, l.Blueprint, l, func(g *Line) { g.Blueprint = l.Blueprint })
		sk := svcKey{bp: l.Blueprint}
		if l.ServiceID != nil {
			sk.sid, sk.ok = *l.ServiceID, true
		}
		group(svcs, sk, l, func(g *Line) { g.Blueprint, g.ServiceID = l.Blueprint, l.ServiceID })
		r.Total.HourlyUSD += l.HourlyUSD
		r.Total.MonthToDateUSD += l.MonthToDateUSD
		r.Total.ForecastUSD += l.ForecastUSD
	}
	r.Remotes = sorted(remotes)
	r.Blueprints = sorted(bps)
	r.Services = sorted(svcs)
	r.Instances = sorted(s.byInst)
	roundLine(&r.Total)
	return r
}

func group[K comparable](m map[K]*Line, k K, l *Line, label func(*Line)) {
	g := m[k]
	if g == nil {
		g = &Line{}
		label(g)
		m[k] = g
	}
	g.HourlyUSD += l.HourlyUSD
	g.MonthToDateUSD += l.MonthToDateUSD
	g.ForecastUSD += l.ForecastUSD
}

// sorted lists the lines most expensive first (by forecast), so the table
// leads with what matters; ties keep a stable order by their labels.
func sorted[K comparable](m map[K]*Line) []Line {
	out := make([]Line, 0, len(m))
	for _, l := range m {
		c := *l
		roundLine(&c)
		out = append(out, c)
	}
	// Comparisons return early: cmp.Or would evaluate every key of every
	// pair, which is most of the report's time at 10,000 instances.
	slices.SortFunc(out, func(a, b Line) int {
		if c := cmp.Compare(b.ForecastUSD, a.ForecastUSD); c != 0 {
			return c
		}
		if a.Instance != b.Instance {
			return strings.Compare(a.Instance, b.Instance)
		}
		if a.Remote != b.Remote {
			return strings.Compare(a.Remote, b.Remote)
		}
		if a.Blueprint != b.Blueprint {
			return strings.Compare(a.Blueprint, b.Blueprint)
		}
		var sa, sb uint64
		if a.ServiceID != nil {
			sa = *a.ServiceID
		}
		if b.ServiceID != nil {
			sb = *b.ServiceID
		}
		return cmp.Compare(sa, sb)
	})
	return out
}

func roundLine(l *Line) {
	l.HourlyUSD = round(l.HourlyUSD, 6)
	l.MonthToDateUSD = round(l.MonthToDateUSD, 4)
	l.ForecastUSD = round(l.ForecastUSD, 4)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
