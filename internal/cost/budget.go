package cost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/state"
)

// GlobalScope names the budget over every remote.
const GlobalScope = "*"

// DefaultThresholds are the percentages of a limit that raise an alert.
var DefaultThresholds = []int{50, 80, 100}

// Budget is a monthly limit on one remote's spend, or on all of it.
type Budget struct {
	// Scope is a remote's name, or GlobalScope.
	Scope           string  `json:"scope" yaml:"scope"`
	MonthlyLimitUSD float64 `json:"monthly_limit_usd" yaml:"monthly_limit_usd"`
	Thresholds      []int   `json:"thresholds" yaml:"thresholds"` // percent, ascending
	Webhook         string  `json:"webhook,omitempty" yaml:"webhook,omitempty"`
	// StopAtLimit terminates the scope's instances when month-to-date
	// spend reaches the limit. Off by default: stopping a service is a
	// bigger surprise than a bill, so an operator must ask for it.
	StopAtLimit bool `json:"stop_at_limit,omitempty" yaml:"stop_at_limit,omitempty"`
}

// Validate reports every problem at once.
func (b *Budget) Validate() error {
	var errs []error
	if b.Scope == "" {
		errs = append(errs, errors.New("scope is empty"))
	}
	if !(b.MonthlyLimitUSD > 0) || b.MonthlyLimitUSD > 1e9 {
		errs = append(errs, fmt.Errorf("monthly limit %v: must be a positive USD amount", b.MonthlyLimitUSD))
	}
	if len(b.Thresholds) == 0 {
		b.Thresholds = slices.Clone(DefaultThresholds)
	}
	slices.Sort(b.Thresholds)
	b.Thresholds = slices.Compact(b.Thresholds)
	for _, t := range b.Thresholds {
		if t < 1 || t > 1000 {
			errs = append(errs, fmt.Errorf("threshold %d%%: must be 1 to 1000", t))
		}
	}
	if b.Webhook != "" {
		u, err := url.Parse(b.Webhook)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("webhook %q: must be an http(s) URL", b.Webhook))
		}
	}
	return errors.Join(errs...)
}

// Applies reports whether an instance on remote counts against b.
func (b *Budget) Applies(remote string) bool { return b.Scope == GlobalScope || b.Scope == remote }

// WouldBreak reports whether adding extraHourly now, on top of the scope's
// forecast, would take the month's forecast past the limit.
func (b *Budget) WouldBreak(forecast, extraHourly float64, now time.Time) (float64, bool) {
	f := forecast + extraHourly*HoursLeft(now)
	return f, extraHourly > 0 && f > b.MonthlyLimitUSD
}

const budgetPrefix = "cost/budget/"
const alertPrefix = "cost/alert/"

// Budgets is the budget and alert book, kept in the state database's meta
// table so it survives restarts and is shared by every manager of the
// database.
type Budgets struct {
	Store *state.Store
}

// Set stores b, replacing the scope's earlier budget.
func (bs Budgets) Set(ctx context.Context, b Budget) error {
	if err := b.Validate(); err != nil {
		return err
	}
	v, _ := json.Marshal(b)
	return bs.Store.SetMeta(ctx, budgetPrefix+b.Scope, v)
}

// Delete removes the scope's budget.
func (bs Budgets) Delete(ctx context.Context, scope string) error {
	return bs.Store.DeleteMeta(ctx, budgetPrefix+scope)
}

// List returns every budget, global first then by remote.
func (bs Budgets) List(ctx context.Context) ([]Budget, error) {
	es, err := bs.Store.ListMeta(ctx, budgetPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Budget, 0, len(es))
	for _, e := range es {
		var b Budget
		if err := json.Unmarshal(e.Value, &b); err != nil {
			return nil, fmt.Errorf("cost: budget %s: %w", e.Key, err)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Budget) int {
		if (a.Scope == GlobalScope) != (b.Scope == GlobalScope) {
			if a.Scope == GlobalScope {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Scope, b.Scope)
	})
	return out, nil
}

// Alert is one threshold crossing: what the webhook receives as JSON.
type Alert struct {
	Scope           string    `json:"scope"`
	Month           string    `json:"month"`
	ThresholdPct    int       `json:"threshold_pct"`
	MonthlyLimitUSD float64   `json:"monthly_limit_usd"`
	MonthToDateUSD  float64   `json:"month_to_date_usd"`
	ForecastUSD     float64   `json:"forecast_usd"`
	At              time.Time `json:"at"`
	// Delivered is set once the webhook answered 2xx (or there is none).
	Delivered bool `json:"delivered"`
}

func alertKey(scope, month string, pct int) string {
	return fmt.Sprintf("%s%s/%s/%04d", alertPrefix, scope, month, pct)
}

// Crossings records every threshold of b that spend (month to date) has
// reached in now's month and that was not recorded before, and returns
// them. Recording is an atomic insert-if-absent in state, so a crossing is
// claimed exactly once per month however often (or by however many
// restarted managers) it is checked.
func (bs Budgets) Crossings(ctx context.Context, b Budget, spend Line, now time.Time) ([]Alert, error) {
	month := MonthStart(now).Format("2006-01")
	var out []Alert
	for _, pct := range b.Thresholds {
		if spend.MonthToDateUSD < b.MonthlyLimitUSD*float64(pct)/100 {
			break
		}
		a := Alert{Scope: b.Scope, Month: month, ThresholdPct: pct, MonthlyLimitUSD: b.MonthlyLimitUSD,
			MonthToDateUSD: spend.MonthToDateUSD, ForecastUSD: spend.ForecastUSD, At: now.UTC(), Delivered: b.Webhook == ""}
		v, _ := json.Marshal(a)
		err := bs.Store.InsertMeta(ctx, alertKey(b.Scope, month, pct), v)
		if errors.Is(err, state.ErrExists) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Undelivered returns recorded crossings whose webhook has not yet
// succeeded: a manager that stopped mid-delivery resumes them on start.
func (bs Budgets) Undelivered(ctx context.Context) ([]Alert, error) {
	es, err := bs.Store.ListMeta(ctx, alertPrefix)
	if err != nil {
		return nil, err
	}
	var out []Alert
	for _, e := range es {
		var a Alert
		if json.Unmarshal(e.Value, &a) == nil && !a.Delivered {
			out = append(out, a)
		}
	}
	return out, nil
}

// MarkDelivered records that a's webhook succeeded.
func (bs Budgets) MarkDelivered(ctx context.Context, a Alert) error {
	a.Delivered = true
	v, _ := json.Marshal(a)
	return bs.Store.SetMeta(ctx, alertKey(a.Scope, a.Month, a.ThresholdPct), v)
}

// Webhook posts alerts as JSON.
type Webhook struct {
	Client *http.Client
	// Backoff is the wait before each retry; its length is the number of
	// retries. Default 1s, 2s, 4s, 8s, 16s.
	Backoff []time.Duration
	Log     *slog.Logger
}

// Deliver posts a to url until it answers 2xx, a 4xx other than 408/429
// says retrying is pointless, the retries run out or ctx ends. The body
// carries an idempotency key (scope/month/threshold) so a receiver can
// drop the duplicate a crash between its 2xx and our record could cause.
func (w Webhook) Deliver(ctx context.Context, url string, a Alert) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	backoff := w.Backoff
	if backoff == nil {
		backoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	}
	body, _ := json.Marshal(struct {
		Alert
		Key string `json:"idempotency_key"`
		Msg string `json:"message"`
	}{a, alertKey(a.Scope, a.Month, a.ThresholdPct), a.Message()})
	var last error
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("cost: webhook: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "bpm-cost-alert")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
			if resp.StatusCode/100 == 4 && resp.StatusCode != 408 && resp.StatusCode != 429 {
				return fmt.Errorf("cost: webhook %s: %w (not retried)", url, last)
			}
		} else {
			last = err
		}
		if attempt >= len(backoff) {
			return fmt.Errorf("cost: webhook %s: gave up after %d attempts: %w", url, attempt+1, last)
		}
		if w.Log != nil {
			w.Log.Warn("cost alert webhook failed, retrying", "url", url, "attempt", attempt+1, "err", last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cost: webhook %s: %w", url, ctx.Err())
		case <-time.After(backoff[attempt]):
		}
	}
}

// Message is the alert as one human sentence (log line and webhook).
func (a Alert) Message() string {
	scope := "all remotes"
	if a.Scope != GlobalScope {
		scope = "remote " + a.Scope
	}
	return fmt.Sprintf("bpm: %s spent $%.2f in %s, %d%% of its $%.2f monthly limit (forecast $%.2f)",
		scope, a.MonthToDateUSD, a.Month, a.ThresholdPct, a.MonthlyLimitUSD, a.ForecastUSD)
}
