package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
)

// startManager builds a manager from config and opens its socket.
func startManager(ctx context.Context, g *globals) (*manager.Manager, *config.Config, func(context.Context) error, error) {
	cfg, err := g.loadConfigWithSecrets()
	if err != nil {
		return nil, nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(g.streams.ErrOut, &slog.HandlerOptions{Level: cfg.Manager.SlogLevel()}))
	m, err := manager.New(ctx, manager.Options{Config: cfg, Logger: log,
		// Opened only when the WireGuard hub first starts, so a local-only
		// operator is never asked for the passphrase. The directory is the
		// loaded config's, which is what openKeystore would read again.
		Keystore: func() (manager.Keystore, error) {
			pass, err := keystore.PassphraseFromEnv()
			if err != nil {
				return nil, err
			}
			return keystore.Open(cfg.Manager.KeystoreDir, pass)
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	// The proxy's port first: a taken port is a startup error, before the
	// manager touches any instance.
	if err := m.ListenProxy(ctx); err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	if err := m.Reconcile(ctx); err != nil {
		log.Warn("initial reconcile incomplete", "err", err)
	}
	socket := cfg.Manager.Socket
	if g.socket != "" {
		socket = g.socket
	}
	l, err := manager.Listen(ctx, socket)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	serve := func(ctx context.Context) error {
		defer m.Close()
		return m.Serve(ctx, l)
	}
	return m, cfg, serve, nil
}

func newManagerCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "manager",
		Short: "Run the manager in the foreground",
		Long: `Run the manager in the foreground: it reconciles state with what is running,
serves the local API on its unix socket (mode 0600), checks instance health, and
stops cleanly on SIGINT or SIGTERM. Instances keep running when the manager stops;
the next manager re-attaches to them.`,
		Example: `  bpm manager
  bpm manager --remote-config ./production.toml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, serve, err := startManager(cmd.Context(), g)
			if err != nil {
				return err
			}
			return serve(cmd.Context())
		},
	}
}

func newUpCommand(g *globals) *cobra.Command {
	var pkgArg string
	var keep bool
	var serviceID int64
	cmd := &cobra.Command{
		Use:   "up --package PACKAGE",
		Short: "Start the manager and deploy a package in one step",
		Long: `Start the manager in the foreground and deploy PACKAGE on this machine, then
print where the instance answers once its health check passes, the auth proxy's
URL, and how to get a token for it. Ctrl-C terminates
the instance and stops the manager; with --keep the instance keeps running and the
next manager re-attaches to it.`,
		Example: `  bpm up --package examples/echo
  bpm up --package my-blueprint --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pkgArg == "" {
				return usagef("--package is required")
			}
			if serviceID < 0 {
				return usagef("--service-id must be ≥ 0")
			}
			ctx := cmd.Context()
			// Find the package before starting anything: a typo should not
			// bind the proxy or reconcile state first.
			pcfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			pkg, err := blueprint.Resolve(pkgArg, pcfg.Manager.PackagePaths)
			if err != nil {
				return packageErr(err)
			}
			m, _, serve, err := startManager(ctx, g)
			if err != nil {
				return err
			}
			sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan error, 1)
			go func() { done <- serve(sctx) }()
			shutdown := func() error { stop(); return <-done }

			req := api.DeployRequest{PackagePath: pkg.Dir}
			if cmd.Flags().Changed("service-id") {
				v := uint64(serviceID)
				req.ServiceID = &v
			}
			g.streams.Notice("deploying %s %s on this machine ...", pkg.Manifest.Name, pkg.Manifest.Version)
			inst, err := m.Deploy(ctx, req)
			if err != nil {
				return joinErr(err, shutdown())
			}
			d, err := waitHealthy(ctx, m, inst.ID)
			if err != nil {
				if !keep {
					m.Terminate(context.WithoutCancel(ctx), inst.ID)
				}
				return joinErr(err, shutdown())
			}
			fmt.Fprintf(g.streams.Out, "%s %s is running as %s (service id %d)\n", pkg.Manifest.Name, pkg.Manifest.Version, d.ID, d.ServiceID)
			if d.Address != "" {
				fmt.Fprintf(g.streams.Out, "answering at http://%s/\n", d.Address)
			}
			if purl := m.ProxyURL(); purl != "" {
				fmt.Fprintf(g.streams.Out, "auth proxy at %s\n", purl)
				printTokenHint(g, purl, d.ServiceID)
			}
			g.streams.Notice("press Ctrl-C to stop")
			<-ctx.Done()
			if !keep {
				g.streams.Notice("terminating %s ...", d.ID)
				if _, err := m.Terminate(context.WithoutCancel(ctx), d.ID); err != nil {
					return joinErr(err, shutdown())
				}
			} else {
				g.streams.Notice("leaving %s running (--keep)", d.ID)
			}
			return shutdown()
		},
	}
	cmd.Flags().StringVar(&pkgArg, "package", "", "package directory, blueprint.toml path, or package name")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the instance running when bpm up stops")
	cmd.Flags().Int64Var(&serviceID, "service-id", 0, "service id (default: the smallest unused one)")
	return cmd
}

// waitHealthy polls the instance until it is running (its health check, if
// any, passing), failed, or two minutes pass.
func waitHealthy(ctx context.Context, m *manager.Manager, id string) (api.InstanceDetail, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		d, err := m.Status(ctx, id)
		if err != nil {
			return d, err
		}
		switch provider.State(d.State) {
		case provider.StateRunning:
			return d, nil
		case provider.StateFailed, provider.StateTerminated:
			return d, fmt.Errorf("instance %s %s: %s", id, d.State, d.Message)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("instance %s not healthy in time (state %s: %s)", id, d.State, strings.TrimSpace(d.Message))
		case <-t.C:
		}
	}
}

func joinErr(err, other error) error {
	if other == nil {
		return err
	}
	return fmt.Errorf("%w (and stopping the manager: %v)", err, other)
}

// printTokenHint tells the operator how to reach the service through the
// proxy: mint a key, trade it for a token, send the token.
func printTokenHint(g *globals, proxyURL string, serviceID uint64) {
	proxyFlag := ""
	if base := strings.TrimSuffix(proxyURL, "/"); base != authclient.DefaultProxyURL {
		proxyFlag = " --proxy " + base
	}
	g.streams.Notice("get a token: bpm auth key create --service-id %d --save api.key && bpm auth token%s --api-key-file api.key --save token", serviceID, proxyFlag)
	g.streams.Notice(`then:        curl -H "Authorization: Bearer $(cat token)" %s`, proxyURL)
}
