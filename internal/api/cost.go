package api

import (
	"context"
	"net/http"
	"net/url"
)

// EstimateRequest asks the manager to price a package on a remote. The
// manager's estimate also knows how many instances share a cluster fee.
type EstimateRequest struct {
	PackagePath string `json:"package_path"`
	Remote      string `json:"remote,omitempty"`
}

// BudgetRequest sets (or with Delete, removes) a monthly budget. An empty
// Remote is the global budget.
type BudgetRequest struct {
	Remote          string  `json:"remote,omitempty"`
	MonthlyLimitUSD float64 `json:"monthly_limit_usd"`
	Thresholds      []int   `json:"thresholds,omitempty"`
	Webhook         string  `json:"webhook,omitempty"`
	StopAtLimit     bool    `json:"stop_at_limit,omitempty"`
	Delete          bool    `json:"delete,omitempty"`
}

// The cost replies are the cost package's own types (cost.Estimate,
// cost.Report, []cost.Budget); the client decodes into what the caller
// passes, so package api does not depend on package cost.

// Estimate prices a package on a remote; out receives a cost.Estimate.
func (c *Client) Estimate(ctx context.Context, req EstimateRequest, out any) error {
	return c.do(ctx, http.MethodPost, "/cost/estimate", req, out)
}

// Costs reports month to date and forecast; out receives a cost.Report.
func (c *Client) Costs(ctx context.Context, remote string, out any) error {
	path := "/cost/report"
	if remote != "" {
		path += "?remote=" + url.QueryEscape(remote)
	}
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// SetBudget stores a budget; out receives the stored cost.Budget list.
func (c *Client) SetBudget(ctx context.Context, req BudgetRequest, out any) error {
	return c.do(ctx, http.MethodPut, "/cost/budgets", req, out)
}

// Budgets lists budgets; out receives []cost.Budget.
func (c *Client) Budgets(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/cost/budgets", nil, out)
}
