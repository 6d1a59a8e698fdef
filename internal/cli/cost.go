package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/cost"
	"github.com/bpm-project/bpm/internal/provider"
)

// estimateLocal prices pkg on remote from the config and the embedded
// catalog alone. estimate-cost works without a manager this way; the
// manager prices the same way at deploy time, adding how many instances
// already share a Kubernetes cluster's fee.
func estimateLocal(cfg *config.Config, remote string, pkg *blueprint.Package, now time.Time) (*cost.Estimate, error) {
	cat, err := cost.Builtin()
	if err != nil {
		return nil, err
	}
	req, ok, err := cost.ForRemote(cfg, remote, pkg.Manifest.Resources)
	if err != nil {
		return nil, packageErr(err)
	}
	if !ok {
		return nil, fmt.Errorf("remote %q: %w in config (configured: %v)", remote, provider.ErrNotFound, cfg.RemoteNames())
	}
	req.Now = now
	return cat.Estimate(req), nil
}

func newEstimateCostCommand(g *globals) *cobra.Command {
	var remote, pkgArg string
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "estimate-cost --remote NAME --package PACKAGE",
		Short: "Estimate what running a package on a remote would cost",
		Long: `Rank the ways one instance of the package could be priced on the remote: catalog
instance types that fit its [resources] (when the remote's [pricing] names a cloud
and region), on-demand and spot, and the remote's rate card. A Kubernetes instance
is priced as its share of a node plus its share of the cluster fee. Monthly is
730 hours. The row marked * is what bpm meters and budgets with.

Works without a manager: it reads the config and the package. Prices older than
[cost] max_price_age (default 180 days), or of unknown date, are flagged.`,
		Example: `  bpm estimate-cost --remote aws --package my-blueprint
  bpm estimate-cost --remote aws --package ./echo -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if remote == "" || pkgArg == "" {
				return usagef("--remote and --package are required")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			pkg, err := blueprint.Resolve(pkgArg, cfg.Manager.PackagePaths)
			if err != nil {
				return packageErr(err)
			}
			e, err := estimateLocal(cfg, remote, pkg, time.Now())
			if err != nil {
				return err
			}
			return out.print(g.streams.Out, e, func(tw *tabwriter.Writer) { estimateTable(tw, e) })
		},
	}
	cmd.Flags().StringVar(&remote, "remote", "", "remote to price (local for this machine)")
	cmd.Flags().StringVar(&pkgArg, "package", "", "package directory, blueprint.toml path, or package name")
	out.register(cmd)
	return cmd
}

func estimateTable(tw *tabwriter.Writer, e *cost.Estimate) {
	date := e.CatalogDate
	if date == "" {
		date = "unknown"
	}
	fmt.Fprintf(tw, "remote %s (%s), needs %s; catalog copied %s, prices older than %d days flagged\n",
		e.Remote, e.ProviderType, e.Need, date, e.MaxAgeDays)
	row(tw, "RANK", "KIND", "TYPE", "REGION", "HOURLY", "MONTHLY", "PRICE DATE", "DETAIL")
	for _, o := range e.Options {
		rank := fmt.Sprint(o.Rank)
		if o.Charged {
			rank += "*"
		}
		date := o.SourceDate
		if i := strings.Index(date, " "); i > 0 {
			date = date[:i] // the table keeps the date, JSON keeps the full note
		}
		if o.Stale {
			date += " (!" + o.StaleNote + ")"
		}
		row(tw, rank, o.Kind, dash(o.InstanceType), dash(o.Region), usd(o.HourlyUSD, 4), usd(o.MonthlyUSD, 2), dash(date), o.Detail)
	}
	for _, w := range e.Warnings {
		fmt.Fprintf(tw, "warning: %s\n", w)
	}
}

func usd(v float64, prec int) string { return fmt.Sprintf("$%.*f", prec, v) }

// stdinIsTerminal reports whether r is a terminal someone can answer at.
func stdinIsTerminal(r io.Reader) bool {
	f, ok := r.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// confirmSpend applies the deploy policy before money is spent: a remote
// that costs nothing, --yes, or a remote whose [pricing] says confirm =
// false go ahead; otherwise a terminal is asked, and a non-interactive run
// is refused, because a script that never saw the price must not commit
// the operator to it.
func confirmSpend(g *globals, cfg *config.Config, remote string, e *cost.Estimate, yes bool) error {
	if e.HourlyUSD == 0 {
		return nil
	}
	g.streams.Notice("estimate: %s/hour, %s/month on %s (%s)", usd(e.HourlyUSD, 4), usd(e.MonthlyUSD, 2), e.Remote, chargedDetail(e))
	if yes {
		return nil
	}
	pr, _ := cost.PricingOf(cfg.Remotes[remote])
	if remote == "" || remote == config.LocalRemote {
		pr = cfg.Cost.Local
	}
	if !pr.ConfirmSpend() {
		return nil
	}
	if !stdinIsTerminal(g.streams.In) {
		return refusedf("deploying to %s costs about %s/month and nobody confirmed it: pass --yes, or set confirm = false in [remote.%s.pricing] to allow unattended deploys there",
			remote, usd(e.MonthlyUSD, 2), remote)
	}
	fmt.Fprintf(g.streams.ErrOut, "Deploy and start paying about %s/month? [y/N] ", usd(e.MonthlyUSD, 2))
	ans, err := bufio.NewReader(g.streams.In).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(ans)) {
	case "y", "yes":
		return nil
	}
	return refusedf("deploy cancelled")
}

func chargedDetail(e *cost.Estimate) string {
	for _, o := range e.Options {
		if o.Charged {
			return o.Detail
		}
	}
	return ""
}

// refusedf is a refusal that is the operator's policy, not a failure:
// exit 8, like a budget refusal.
func refusedf(format string, args ...any) error {
	return &classified{err: fmt.Errorf(format, args...), kind: provider.ErrQuota}
}

func newCostsCommand(g *globals) *cobra.Command {
	var remote string
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "costs [--remote NAME]",
		Short: "Show month-to-date cost and the forecast to month end",
		Long: `Show what instances have cost this month (UTC), from the intervals they actually
ran (running or degraded), and the forecast to the month's end if what runs now
keeps running: per remote, blueprint, service and instance, most expensive first.`,
		Example: `  bpm costs
  bpm costs --remote aws -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var r cost.Report
			if err := c.Costs(cmd.Context(), remote, &r); err != nil {
				return err
			}
			return out.print(g.streams.Out, &r, func(tw *tabwriter.Writer) { costsTable(tw, &r) })
		},
	}
	cmd.Flags().StringVar(&remote, "remote", "", "only this remote")
	out.register(cmd)
	return cmd
}

func costsTable(tw *tabwriter.Writer, r *cost.Report) {
	fmt.Fprintf(tw, "month %s (UTC), %.0f hours left\n", r.Month, r.HoursLeft)
	row(tw, "GROUP", "NAME", "HOURLY NOW", "MONTH TO DATE", "FORECAST")
	line := func(kind, name string, l cost.Line) {
		row(tw, kind, name, usd(l.HourlyUSD, 4), usd(l.MonthToDateUSD, 2), usd(l.ForecastUSD, 2))
	}
	line("total", "-", r.Total)
	for _, l := range r.Remotes {
		line("remote", dash(l.Remote), l)
	}
	for _, l := range r.Blueprints {
		line("blueprint", dash(l.Blueprint), l)
	}
	for _, l := range r.Services {
		name := dash(l.Blueprint)
		if l.ServiceID != nil {
			name += fmt.Sprintf(" #%d", *l.ServiceID)
		}
		line("service", name, l)
	}
	for _, l := range r.Instances {
		line("instance", l.Instance, l)
	}
}

func newSetAlertCommand(g *globals) *cobra.Command {
	var remote, webhook string
	var limit float64
	var thresholds []int
	var stop, del bool
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "set-alert [--remote NAME] --monthly-limit USD",
		Short: "Set a monthly budget and its alerts",
		Long: `Set the monthly budget of one remote, or without --remote the global budget over
all of them. When month-to-date spend reaches each threshold (50, 80 and 100% by
default) bpm logs it and, with --webhook, POSTs JSON to the URL (retried with
backoff, once per threshold per month, across manager restarts). A deploy whose
forecast would break a budget is refused (exit 8) unless deploy --force.
--stop-at-limit terminates the budget's instances at 100%; it is off by default.`,
		Example: `  bpm set-alert --remote aws --monthly-limit 100
  bpm set-alert --monthly-limit 500 --thresholds 75,90,100 --webhook https://hooks.example.com/bpm
  bpm set-alert --remote aws --delete`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if !del {
				if !cmd.Flags().Changed("monthly-limit") {
					return usagef("--monthly-limit is required")
				}
				if limit <= 0 {
					return usagef("--monthly-limit must be a positive amount in USD")
				}
			}
			for _, t := range thresholds {
				if t < 1 || t > 1000 {
					return usagef("--thresholds: %d is not a percentage from 1 to 1000", t)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var bs []cost.Budget
			req := api.BudgetRequest{Remote: remote, MonthlyLimitUSD: limit, Thresholds: thresholds,
				Webhook: webhook, StopAtLimit: stop, Delete: del}
			if err := c.SetBudget(cmd.Context(), req, &bs); err != nil {
				return err
			}
			return out.print(g.streams.Out, bs, func(tw *tabwriter.Writer) {
				row(tw, "SCOPE", "MONTHLY LIMIT", "THRESHOLDS", "WEBHOOK", "STOP AT LIMIT")
				for _, b := range bs {
					scope := b.Scope
					if scope == cost.GlobalScope {
						scope = "global"
					}
					ts := make([]string, len(b.Thresholds))
					for i, t := range b.Thresholds {
						ts[i] = fmt.Sprintf("%d%%", t)
					}
					row(tw, scope, usd(b.MonthlyLimitUSD, 2), strings.Join(ts, ","), dash(b.Webhook), b.StopAtLimit)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&remote, "remote", "", "remote the budget applies to (default: the global budget)")
	f.Float64Var(&limit, "monthly-limit", 0, "monthly limit in USD")
	f.IntSliceVar(&thresholds, "thresholds", nil, "alert thresholds in percent of the limit (default 50,80,100)")
	f.StringVar(&webhook, "webhook", "", "URL to POST each alert to, as JSON")
	f.BoolVar(&stop, "stop-at-limit", false, "terminate the budget's instances when spend reaches 100%")
	f.BoolVar(&del, "delete", false, "remove the budget")
	out.register(cmd)
	return cmd
}
