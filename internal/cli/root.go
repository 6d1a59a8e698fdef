package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/provider"
	// Registers every built-in provider; remote ones unless built with
	// -tags bpm_noremote.
	_ "github.com/bpm-project/bpm/internal/provider/builtin"
)

// globals are the flags every command shares.
type globals struct {
	configFile string
	socket     string
	quiet      bool
	streams    *IOStreams
}

// Main runs bpm with args (without the program name) and returns the exit
// code. cmd/bpm calls only this.
func Main(ctx context.Context, args []string, streams *IOStreams) int {
	cmd := NewRootCommand(streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra reports an unknown subcommand as a plain error.
		err = usagef("%v", err)
	}
	var ee *exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintf(streams.ErrOut, "bpm: %v\n", err)
		if errors.Is(err, api.ErrManagerUnreachable) {
			fmt.Fprintln(streams.ErrOut, "bpm: start it with `bpm manager` (or run `bpm up --package DIR`)")
		}
	}
	return ExitCode(err)
}

// NewRootCommand builds the command tree.
func NewRootCommand(streams *IOStreams) *cobra.Command {
	g := &globals{streams: streams}
	root := &cobra.Command{
		Use:   "bpm",
		Short: "Blueprint Manager: run Blueprint service instances here or on remote infrastructure",
		Long: `bpm runs Blueprint service instances on this machine (the default) or on remote
infrastructure (Kubernetes, Docker hosts, SSH hosts) through one provider interface.

Start the manager with 'bpm manager' (or 'bpm up --package DIR' to start it and deploy
in one step); the other commands talk to it over its unix socket.

Exit codes:
  0 success            4 not available in this release   7 remote unreachable
  1 error              5 manager not running             8 refused by quota or budget
  2 usage error        6 invalid manifest, config or request
  3 not found`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			streams.Quiet = g.quiet
		},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "remote-config", "", "operator config file (default $BPM_CONFIG_DIR/config.toml, $XDG_CONFIG_HOME/bpm/config.toml or ~/.config/bpm/config.toml)")
	pf.StringVar(&g.configFile, "config", "", "alias of --remote-config")
	pf.StringVar(&g.socket, "socket", os.Getenv("BPM_SOCKET"), "manager socket (default from config; env BPM_SOCKET)")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only results and errors")

	root.AddCommand(
		newVersionCommand(g),
		newManagerCommand(g),
		newUpCommand(g),
		newDeployCommand(g),
		newListCommand(g),
		newStatusCommand(g),
		newTerminateCommand(g),
		newLogsCommand(g),
		newPackageCommand(g),
		newConfigCommand(g),
		newKeysCommand(g),
		newEstimateCostCommand(g),
		newCostsCommand(g),
		newSetAlertCommand(g),
		newAuthCommand(g),
		newGatewayCommand(g),
		newTunnelCommand(g),
		newSuperviseCommand(g),
	)
	usageArgs(root)
	return root
}

// loadConfig loads the operator config: the --remote-config file when
// given (it must exist), else the default location (missing means defaults).
// keystore:NAME references are not opened: commands that only talk to the
// manager never need secret values, and should not need the passphrase.
func (g *globals) loadConfig() (*config.Config, error) {
	return g.load(unopenedKeystore{})
}

// loadConfigWithSecrets is loadConfig with keystore references resolved, for
// the manager and `config validate`, which need the values.
func (g *globals) loadConfigWithSecrets() (*config.Config, error) {
	return g.load(&lazyKeystore{g: g})
}

func (g *globals) load(ks config.Keystore) (*config.Config, error) {
	cfg, err := config.Load(g.configFile, config.LoadOptions{Keystore: ks})
	if err != nil {
		return nil, classifyConfigErr(err)
	}
	return cfg, nil
}

// unopenedKeystore stands in for the keystore when secret values are not
// needed; the placeholder is never used as a credential.
type unopenedKeystore struct{}

func (unopenedKeystore) Get(name string) (string, error) {
	if err := keystore.ValidateName(name); err != nil {
		return "", err
	}
	return "(keystore:" + name + ")", nil
}

// lazyKeystore opens the keystore on the first reference, so a config with
// none never asks for the passphrase.
type lazyKeystore struct {
	g  *globals
	ks *keystore.Keystore
}

func (l *lazyKeystore) Get(name string) (string, error) {
	if l.ks == nil {
		dir, err := l.g.keystoreDir()
		if err != nil {
			return "", errKeystoreNotOpened
		}
		pass, err := keystore.PassphraseFromEnv()
		if err != nil {
			return "", err
		}
		if l.ks, err = keystore.Open(dir, pass); err != nil {
			return "", err
		}
	}
	return l.ks.Get(name)
}

// keystoreDir finds the keystore directory from the config without
// resolving any secret (which would need the keystore itself).
func (g *globals) keystoreDir() (string, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return "", err
	}
	return cfg.Manager.KeystoreDir, nil
}

// errKeystoreNotOpened stands in for a keystore reference while the rest of
// the config is invalid: the config's own errors are reported beside it,
// and repeating them inside the reference's error would only confuse.
var errKeystoreNotOpened = errors.New("keystore not opened because the config has other errors")

func (g *globals) openKeystore() (*keystore.Keystore, error) {
	dir, err := g.keystoreDir()
	if err != nil {
		return nil, err
	}
	pass, err := keystore.PassphraseFromEnv()
	if err != nil {
		return nil, err
	}
	return keystore.Open(dir, pass)
}

// client returns an API client for the manager's socket.
func (g *globals) client() (*api.Client, error) {
	if g.socket != "" {
		return api.NewClient(g.socket), nil
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return api.NewClient(cfg.Manager.Socket), nil
}

func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return a, nil
}

// classifyConfigErr: a --remote-config file that does not exist is "not
// found"; every other config problem is invalid input.
func classifyConfigErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &classified{err: err, kind: provider.ErrNotFound}
	}
	if errors.Is(err, api.ErrInvalid) {
		return err
	}
	return &classified{err: err, kind: api.ErrInvalid}
}

// usageArgs turns cobra's argument-count errors into usage errors (exit 2)
// throughout the tree.
func usageArgs(cmd *cobra.Command) {
	// A group command (bpm package, bpm keys, ...) prints its help when
	// called alone, and an unknown subcommand is a usage error, not help
	// with exit 0.
	if cmd.HasParent() && cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], c.CommandPath())
			}
			return c.Help()
		}
	}
	if orig := cmd.Args; orig != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := orig(c, args); err != nil {
				return usagef("%v", err)
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageArgs(sub)
	}
}
