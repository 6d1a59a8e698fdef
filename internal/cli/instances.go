package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// allRemotes is --remote given without a value: every remote, no local.
const allRemotes = "*"

// remoteFilterFlag adds --remote with an optional value, so both the spec's
// `bpm list --remote` and `bpm list --remote=aws` parse.
func remoteFilterFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "remote", "", "only instances on remotes; --remote=NAME for one remote")
	fs.Lookup("remote").NoOptDefVal = allRemotes
}

// ---- deploy

type deployOptions struct {
	remote      string
	region      string // one of the remote's [regions]
	pkg         string
	serviceID   int64
	blueprintID int64
	force       bool // deploy even over a monthly budget
	yes         bool // spend without asking
	out         outputFlag
}

func newDeployCommand(g *globals) *cobra.Command {
	o := &deployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy --package PACKAGE [--remote NAME]",
		Short: "Deploy a blueprint package as a new instance",
		Long: `Deploy a blueprint package as a new instance, on this machine by default or on a
configured remote. PACKAGE is a directory or blueprint.toml path, or a package name
found under the working directory or the configured package_paths.

The instance is recorded as pending before anything is started, so a crash at any
point leaves a record the manager reconciles on its next start.

When the remote costs money, the estimate is shown on stderr and, on a terminal,
confirmed before deploying, unless --yes or the remote's [pricing] confirm = false.
Without a terminal and without either, the deploy is refused (exit 8): a script
must say it accepts the price. A deploy whose forecast breaks a monthly budget
(bpm set-alert) is refused (exit 8) unless --force.`,
		Example: `  bpm deploy --package ./examples/echo
  bpm deploy --remote aws --package my-blueprint
  bpm deploy --remote-config ./production.toml --package my-blueprint --service-id 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.out.validate(); err != nil {
				return err
			}
			if o.pkg == "" {
				return usagef("--package is required")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			pkg, err := blueprint.Resolve(o.pkg, cfg.Manager.PackagePaths)
			if err != nil {
				return packageErr(err)
			}
			req := api.DeployRequest{PackagePath: pkg.Dir, Remote: o.remote, Region: o.region}
			if o.region != "" && o.remote == "" {
				return usagef("--region needs --remote: this machine has no regions")
			}
			if g.configFile != "" {
				if req.RemoteConfig, err = absPath(g.configFile); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("service-id") {
				if o.serviceID < 0 {
					return usagef("--service-id must be ≥ 0")
				}
				v := uint64(o.serviceID)
				req.ServiceID = &v
			}
			if cmd.Flags().Changed("blueprint-id") {
				if o.blueprintID < 0 {
					return usagef("--blueprint-id must be ≥ 0")
				}
				v := uint64(o.blueprintID)
				req.BlueprintID = &v
			}
			req.Force = o.force
			if e, err := estimateLocal(cfg, o.remote, pkg, time.Now()); err == nil {
				if err := confirmSpend(g, cfg, remoteName(o.remote), e, o.yes); err != nil {
					return err
				}
			} else if !errors.Is(err, provider.ErrNotFound) {
				// An unknown remote is the manager's to report, as before.
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			g.streams.Notice("deploying %s %s to %s ...", pkg.Manifest.Name, pkg.Manifest.Version, remoteName(o.remote))
			inst, err := c.Deploy(cmd.Context(), req)
			if err != nil {
				return err
			}
			return o.out.print(g.streams.Out, inst, func(tw *tabwriter.Writer) {
				instanceTable(tw, []api.Instance{inst})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.remote, "remote", "", "remote to deploy to (default: this machine)")
	f.StringVar(&o.region, "region", "", "region of the remote ([remote.NAME.regions]; default its primary)")
	f.StringVar(&o.pkg, "package", "", "package directory, blueprint.toml path, or package name")
	f.Int64Var(&o.serviceID, "service-id", 0, "service id (default: the smallest unused one)")
	f.Int64Var(&o.blueprintID, "blueprint-id", 0, "blueprint id (default: the manifest's blueprint_id)")
	f.BoolVar(&o.force, "force", false, "deploy even if the forecast breaks a monthly budget")
	f.BoolVarP(&o.yes, "yes", "y", false, "accept the estimated cost without asking")
	o.out.register(cmd)
	return cmd
}

func remoteName(r string) string {
	if r == "" {
		return "local"
	}
	return r
}

// ---- list

type listOptions struct {
	remote string
	all    bool
	out    outputFlag
}

func newListCommand(g *globals) *cobra.Command {
	o := &listOptions{}
	cmd := &cobra.Command{
		Use:   "list [--remote[=NAME]]",
		Short: "List instances",
		Long: `List the instances the manager knows, newest last. Terminated instances are
hidden unless --all is given. --remote alone lists only instances on remotes;
--remote=NAME (or --remote NAME) lists one remote's.`,
		Example: `  bpm list
  bpm list --remote
  bpm list --remote aws -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.out.validate(); err != nil {
				return err
			}
			opts := api.ListOptions{All: o.all}
			switch {
			case len(args) == 1 && o.remote == allRemotes:
				opts.Remote = args[0] // `--remote aws`, with the optional value given apart
			case len(args) == 1:
				return usagef("unexpected argument %q", args[0])
			case o.remote == allRemotes:
				opts.RemoteOnly = true
			default:
				opts.Remote = o.remote
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.List(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if list == nil {
				list = []api.Instance{}
			}
			return o.out.print(g.streams.Out, list, func(tw *tabwriter.Writer) {
				instanceTable(tw, list)
			})
		},
	}
	remoteFilterFlag(cmd.Flags(), &o.remote)
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "include terminated instances")
	o.out.register(cmd)
	return cmd
}

func instanceTable(tw *tabwriter.Writer, list []api.Instance) {
	row(tw, "INSTANCE", "REMOTE", "BLUEPRINT", "SERVICE", "STATE", "ADDRESS", "AGE")
	now := time.Now()
	for _, in := range list {
		addr := in.Address
		if addr == "" {
			addr = "-"
		}
		// REMOTE.SITE, as `bpm tunnel status` names the site's gateway: an
		// ssh instance's loopback address means little without its host.
		remote := in.Remote
		if in.Site != "" {
			remote += "." + in.Site
		}
		row(tw, in.ID, remote, in.Blueprint, in.ServiceID, in.State, addr, age(now.Sub(in.CreatedAt)))
	}
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// ---- status, terminate, logs: commands addressing one instance

type instanceArg struct {
	id     string
	remote string
}

func (a *instanceArg) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.id, "instance", "", "instance id (bp-...); may also be given as the argument")
	remoteFilterFlag(cmd.Flags(), &a.remote)
	cmd.Flags().Lookup("remote").Usage = "accepted for compatibility with the spec's command lines; the instance id alone selects the instance"
}

func (a *instanceArg) resolve(args []string) (string, error) {
	id := a.id
	if len(args) > 0 {
		if id != "" && id != args[0] {
			return "", usagef("instance given twice: --instance %s and %s", id, args[0])
		}
		id = args[0]
	}
	if id == "" {
		return "", usagef("an instance id is required (--instance bp-...)")
	}
	if !strings.HasPrefix(id, "bp-") {
		return "", usagef("instance id %q must start with bp-", id)
	}
	return id, nil
}

func newStatusCommand(g *globals) *cobra.Command {
	var a instanceArg
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "status --instance ID",
		Short: "Show one instance: state, address, restarts and recent events",
		Example: `  bpm status --instance bp-abc123
  bpm status --remote --instance bp-abc123 -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			id, err := a.resolve(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Status(cmd.Context(), id)
			if err != nil {
				return err
			}
			return out.print(g.streams.Out, d, func(tw *tabwriter.Writer) {
				row(tw, "Instance:", d.ID)
				row(tw, "Remote:", d.Remote+" ("+d.Provider+")")
				if d.Site != "" {
					row(tw, "Site:", d.Site)
				}
				row(tw, "Blueprint:", fmt.Sprintf("%s (blueprint id %d, service id %d)", d.Blueprint, d.BlueprintID, d.ServiceID))
				row(tw, "Package:", d.Package)
				row(tw, "State:", d.State)
				if d.Message != "" {
					row(tw, "Message:", d.Message)
				}
				if d.Address != "" {
					row(tw, "Address:", d.Address)
				}
				row(tw, "Restarts:", d.Restarts)
				if r := d.Route; r != nil {
					via := r.Transport
					if r.Gateway != "" {
						via += " (gateway " + r.Gateway + ")"
					}
					row(tw, "Route:", fmt.Sprintf("service %s → %s via %s", r.Service, r.Upstream, via))
				}
				row(tw, "Created:", d.CreatedAt.Local().Format(time.RFC3339))
				if len(d.Capabilities) > 0 {
					row(tw, "Capabilities:", strings.Join(d.Capabilities, ", "))
				}
				if len(d.Events) > 0 {
					row(tw, "Events:")
					for _, e := range d.Events {
						row(tw, "  "+e.Time.Local().Format("15:04:05"), e.Kind, e.Message)
					}
				}
			})
		},
	}
	a.register(cmd)
	out.register(cmd)
	return cmd
}

func newTerminateCommand(g *globals) *cobra.Command {
	var a instanceArg
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "terminate --instance ID",
		Short: "Stop an instance and free what it holds",
		Long: `Stop an instance and free everything it holds on its target. The instance's
record, logs and data directory are kept; terminating an instance that is already
terminated succeeds.`,
		Example: `  bpm terminate --instance bp-abc123
  bpm terminate --remote --instance bp-abc123`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			id, err := a.resolve(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			g.streams.Notice("terminating %s ...", id)
			inst, err := c.Terminate(cmd.Context(), id)
			if err != nil {
				return err
			}
			return out.print(g.streams.Out, inst, func(tw *tabwriter.Writer) {
				instanceTable(tw, []api.Instance{inst})
			})
		},
	}
	a.register(cmd)
	out.register(cmd)
	return cmd
}

func newLogsCommand(g *globals) *cobra.Command {
	var a instanceArg
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs [-f] --instance ID",
		Short: "Print an instance's output",
		Example: `  bpm logs bp-abc123
  bpm logs -f --tail 100 --instance bp-abc123`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := a.resolve(args)
			if err != nil {
				return err
			}
			if tail < 0 {
				return usagef("--tail must be ≥ 0")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Logs(cmd.Context(), id, follow, tail, g.streams.Out)
		},
	}
	a.register(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	cmd.Flags().IntVar(&tail, "tail", 0, "print only the last N lines (0: all)")
	return cmd
}
