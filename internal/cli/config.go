package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/provider"
)

func newConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show, validate and locate the operator config (config.toml)",
	}
	var out outputFlag
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective config with every secret redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			red := config.Redacted(cfg)
			if out.format != "table" {
				return out.print(g.streams.Out, red, nil)
			}
			// A config is a tree; TOML is its natural table form.
			b, err := toml.Marshal(red)
			if err != nil {
				return fmt.Errorf("config show: %w", err)
			}
			_, err = g.streams.Out.Write(b)
			return err
		},
	}
	out.register(show)
	show.Flags().Lookup("output").Usage = "output format: table (TOML), json or yaml"

	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the config and report every problem at once",
		Example: `  bpm config validate
  bpm config validate --remote-config ./production.toml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfigWithSecrets()
			if err != nil {
				return err
			}
			file := cfg.File
			if file == "" {
				file = "(no config file: built-in defaults)"
			}
			fmt.Fprintf(g.streams.Out, "%s: valid (%d remotes)\n", file, len(cfg.Remotes))
			return nil
		},
	}
	path := &cobra.Command{
		Use:   "path",
		Short: "Print the config file bpm reads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := g.configFile
			if p == "" {
				var err error
				if p, err = config.DefaultPath(); err != nil {
					return err
				}
			}
			fmt.Fprintln(g.streams.Out, p)
			return nil
		},
	}
	cmd.AddCommand(show, validate, path)
	return cmd
}

func newKeysCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the encrypted keystore of credentials",
		Long: `Manage the encrypted keystore (age, scrypt passphrase) that holds credentials.
The passphrase comes from BPM_KEYSTORE_PASSPHRASE or from the file named by
BPM_KEYSTORE_KEY_FILE (readable by its owner only). Config values reference entries as keystore:NAME.
Values are read from standard input, never from the command line, and never printed.`,
	}
	open := g.openKeystore
	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret read from standard input",
		Example: `  printf %s "$TOKEN" | bpm keys set fly-token
  bpm keys set wireguard-key < key.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := keystore.ValidateName(args[0]); err != nil {
				return usagef("%v", err)
			}
			val, err := readSecret(g.streams.In)
			if err != nil {
				return err
			}
			ks, err := open()
			if err != nil {
				return err
			}
			if err := ks.Set(args[0], val); err != nil {
				return err
			}
			g.streams.Notice("stored %s", args[0])
			return nil
		},
	}
	var out outputFlag
	list := &cobra.Command{
		Use:   "list",
		Short: "List secret names (never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			ks, err := open()
			if err != nil {
				return err
			}
			names := ks.List()
			if names == nil {
				names = []string{}
			}
			return out.print(g.streams.Out, names, func(tw *tabwriter.Writer) {
				row(tw, "NAME")
				for _, n := range names {
					row(tw, n)
				}
			})
		},
	}
	out.register(list)
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := open()
			if err != nil {
				return err
			}
			if err := ks.Remove(args[0]); err != nil {
				if errors.Is(err, keystore.ErrNotFound) {
					return fmt.Errorf("key %s: %w", args[0], provider.ErrNotFound)
				}
				return err
			}
			g.streams.Notice("removed %s", args[0])
			return nil
		},
	}
	cmd.AddCommand(set, list, rm)
	return cmd
}

// readSecret reads a value from stdin, dropping one trailing newline (what
// `echo` and a terminal add) but keeping everything else byte for byte.
func readSecret(in io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(in), 1<<20))
	if err != nil {
		return "", fmt.Errorf("read secret from stdin: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", usagef("no value on standard input (pipe the secret in: printf %%s \"$VALUE\" | bpm keys set NAME)")
	}
	return s, nil
}
