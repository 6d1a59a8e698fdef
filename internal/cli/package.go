package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/blueprint"
)

func newPackageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Validate and inspect blueprint packages (blueprint.toml)",
	}
	cmd.AddCommand(newPackageValidateCommand(g), newPackageInspectCommand(g), newPackageImageCommand(g))
	return cmd
}

func loadPackageArg(g *globals, arg string) (*blueprint.Package, error) {
	var paths []string
	if cfg, err := g.loadConfig(); err == nil {
		paths = cfg.Manager.PackagePaths
	}
	pkg, err := blueprint.Resolve(arg, paths)
	if err != nil {
		return nil, packageErr(err)
	}
	return pkg, nil
}

func newPackageValidateCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH",
		Short: "Check a package's manifest and report every problem at once",
		Example: `  bpm package validate ./examples/echo
  bpm package validate ./my-blueprint/blueprint.toml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pkg, err := loadPackageArg(g, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.streams.Out, "%s: %s %s is valid\n", pkg.File, pkg.Manifest.Name, pkg.Manifest.Version)
			return nil
		},
	}
}

// packageView is the printable form of a package.
type packageView struct {
	Name        string        `json:"name" yaml:"name"`
	Version     string        `json:"version" yaml:"version"`
	BlueprintID *uint64       `json:"blueprint_id,omitempty" yaml:"blueprint_id,omitempty"`
	File        string        `json:"file" yaml:"file"`
	Sources     []sourceView  `json:"sources" yaml:"sources"`
	Resources   resourcesView `json:"resources" yaml:"resources"`
	Ports       []portView    `json:"ports,omitempty" yaml:"ports,omitempty"`
	EnvKeys     []string      `json:"env_keys,omitempty" yaml:"env_keys,omitempty"`
	Health      string        `json:"health,omitempty" yaml:"health,omitempty"`
	Isolation   string        `json:"isolation,omitempty" yaml:"isolation,omitempty"`
}

// resourcesView and portView spell fields as blueprint.toml does.
type resourcesView struct {
	CPU     string `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	Memory  string `json:"memory,omitempty" yaml:"memory,omitempty"`
	Storage string `json:"storage,omitempty" yaml:"storage,omitempty"`
	GPU     int    `json:"gpu" yaml:"gpu"`
}

type portView struct {
	Name     string `json:"name" yaml:"name"`
	Port     int    `json:"port" yaml:"port"`
	Protocol string `json:"protocol" yaml:"protocol"`
}

type sourceView struct {
	Kind   string `json:"kind" yaml:"kind"`
	Detail string `json:"detail" yaml:"detail"`
}

func viewPackage(pkg *blueprint.Package) packageView {
	m := pkg.Manifest
	r := m.Resources
	v := packageView{
		Name: m.Name, Version: m.Version, BlueprintID: m.BlueprintID, File: pkg.File, Isolation: m.Isolation,
		Resources: resourcesView{CPU: r.CPU, Memory: r.Memory, Storage: r.Storage, GPU: r.GPU},
	}
	for _, p := range m.Ports {
		v.Ports = append(v.Ports, portView{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
	}
	for _, s := range m.Sources {
		sv := sourceView{Kind: string(s.Kind)}
		switch s.Kind {
		case blueprint.SourceContainer:
			sv.Detail = s.Image
			if s.Archive != "" {
				sv.Detail += " (archive " + s.Archive + ")"
			}
		case blueprint.SourceNative:
			var plats []string
			for _, b := range s.Binaries {
				plats = append(plats, b.OS+"/"+b.Arch)
			}
			sv.Detail = strings.Join(plats, ", ")
		case blueprint.SourceTesting:
			sv.Detail = "go build in " + s.Dir
		}
		v.Sources = append(v.Sources, sv)
	}
	// Only the names: env values may be secrets.
	for k := range m.Env {
		v.EnvKeys = append(v.EnvKeys, k)
	}
	slices.Sort(v.EnvKeys)
	if h := m.Health; h != nil {
		if h.HTTP != "" {
			v.Health = "http " + h.HTTP
		} else {
			v.Health = "tcp"
		}
		v.Health += fmt.Sprintf(" every %s (timeout %s)", h.Interval.Duration, h.Timeout.Duration)
	}
	return v
}

func newPackageInspectCommand(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show what a package contains (env values are never shown)",
		Example: `  bpm package inspect ./examples/echo
  bpm package inspect echo -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			pkg, err := loadPackageArg(g, args[0])
			if err != nil {
				return err
			}
			v := viewPackage(pkg)
			return out.print(g.streams.Out, v, func(tw *tabwriter.Writer) {
				row(tw, "Name:", v.Name)
				row(tw, "Version:", v.Version)
				if v.BlueprintID != nil {
					row(tw, "Blueprint id:", *v.BlueprintID)
				}
				row(tw, "File:", v.File)
				for i, s := range v.Sources {
					row(tw, fmt.Sprintf("Source %d:", i+1), s.Kind+": "+s.Detail)
				}
				r := v.Resources
				row(tw, "Resources:", fmt.Sprintf("cpu=%s memory=%s storage=%s gpu=%d", dash(r.CPU), dash(r.Memory), dash(r.Storage), r.GPU))
				for _, p := range v.Ports {
					row(tw, "Port:", fmt.Sprintf("%s %d/%s", p.Name, p.Port, p.Protocol))
				}
				if len(v.EnvKeys) > 0 {
					row(tw, "Env:", strings.Join(v.EnvKeys, ", "))
				}
				if v.Health != "" {
					row(tw, "Health:", v.Health)
				}
				if v.Isolation != "" {
					row(tw, "Isolation:", v.Isolation)
				}
			})
		},
	}
	out.register(cmd)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
