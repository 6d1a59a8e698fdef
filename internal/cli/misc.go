package cli

import (
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/version"
)

type versionInfo struct {
	Version       string   `json:"version" yaml:"version"`
	Commit        string   `json:"commit,omitempty" yaml:"commit,omitempty"`
	Go            string   `json:"go" yaml:"go"`
	Platform      string   `json:"platform" yaml:"platform"`
	RemoteSupport bool     `json:"remote_support" yaml:"remote_support"`
	Providers     []string `json:"providers" yaml:"providers"`
}

func newVersionCommand(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print bpm's version and whether remote support is compiled in",
		Long: `Print bpm's version, the providers compiled in, and whether remote support is
present. Builds made with -tags bpm_noremote have only the local provider.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			v := versionInfo{
				Version:       version.Version,
				Commit:        version.Commit(),
				Go:            runtime.Version(),
				Platform:      runtime.GOOS + "/" + runtime.GOARCH,
				RemoteSupport: provider.HasRemote(),
				Providers:     provider.Types(),
			}
			return out.print(g.streams.Out, v, func(tw *tabwriter.Writer) {
				row(tw, "bpm", v.Version)
				if v.Commit != "" {
					row(tw, "commit", v.Commit)
				}
				row(tw, "go", v.Go)
				row(tw, "platform", v.Platform)
				rs := "no (built with -tags bpm_noremote)"
				if v.RemoteSupport {
					rs = "yes"
				}
				row(tw, "remote support", rs)
				row(tw, "providers", strings.Join(v.Providers, ", "))
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newCostsCommand(g *globals) *cobra.Command {
	var remote string
	var out outputFlag
	cmd := &cobra.Command{
		Use:     "costs [--remote NAME]",
		Short:   "Show month-to-date cost and forecast (not available yet)",
		Example: `  bpm costs --remote aws`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			return notAvailableYet("costs", "the cost issue")
		},
	}
	cmd.Flags().StringVar(&remote, "remote", "", "only this remote")
	out.register(cmd)
	return cmd
}

func newSetAlertCommand(g *globals) *cobra.Command {
	var remote string
	var limit float64
	cmd := &cobra.Command{
		Use:     "set-alert [--remote NAME] --monthly-limit USD",
		Short:   "Set a monthly budget and its alerts (not available yet)",
		Example: `  bpm set-alert --remote aws --monthly-limit 100`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("monthly-limit") {
				return usagef("--monthly-limit is required")
			}
			if limit <= 0 {
				return usagef("--monthly-limit must be a positive amount in USD")
			}
			return notAvailableYet("set-alert", "the cost issue")
		},
	}
	cmd.Flags().StringVar(&remote, "remote", "", "remote the budget applies to (default: the global budget)")
	cmd.Flags().Float64Var(&limit, "monthly-limit", 0, "monthly limit in USD")
	return cmd
}

// newSuperviseCommand is the hidden entry point of the per-instance
// supervisor process the local provider starts; see package supervisor.
func newSuperviseCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "supervise",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := supervisor.Main(args, g.streams.ErrOut); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}

// exitError carries an exit code chosen by a subprocess-like command.
type exitError struct{ code int }

func (e *exitError) Error() string { return "exited with status " + strconv.Itoa(e.code) }
