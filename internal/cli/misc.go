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
