package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/version"
)

func newGatewayCommand(g *globals) *cobra.Command {
	var file string
	var debug bool
	cmd := &cobra.Command{
		Use:   "gateway [--config FILE]",
		Short: "Run the spoke agent of a remote: the tunnel to the hub and the forwarder",
		Long: `Run a remote's gateway in the foreground. It dials out to the hub over WireGuard
(so it works behind NAT), relays the hub's connections to instance addresses inside
the remote, and answers the hub's control requests. It stops on SIGINT or SIGTERM.

Configuration comes from --config FILE (TOML, or JSON by the .json extension) or,
without it, from the environment:

  BPM_GATEWAY_HUB_ENDPOINT      hub host:port                       (required)
  BPM_GATEWAY_HUB_PUBLIC_KEY    hub public key, base64              (required)
  BPM_GATEWAY_PRIVATE_KEY       own private key, base64             (this or _FILE)
  BPM_GATEWAY_PRIVATE_KEY_FILE  file holding the private key
  BPM_GATEWAY_ADDRESS           own tunnel address, e.g. 10.77.0.2/16 (required)
  BPM_GATEWAY_HUB_ADDRESS       hub tunnel address (default: first of the CIDR)
  BPM_GATEWAY_ALLOW             comma-separated CIDRs it may forward to
                                (default: loopback and private ranges)
  BPM_GATEWAY_MTU               tunnel MTU (default 1420)
  BPM_GATEWAY_BRIDGE_LISTEN     TCP address of the bridge relay for instance
                                sidecars, e.g. :7004 (default: none)

File keys are the same names in lower case without the prefix (allow is a list).`,
		Example: `  bpm gateway --config /etc/bpm/gateway.toml
  bpm gateway image -o bpm-gateway.tar`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg gateway.Config
			var err error
			if file != "" {
				cfg, err = gateway.LoadConfigFile(file)
			} else {
				cfg, err = gateway.ConfigFromEnv(os.Getenv)
				if err != nil {
					err = fmt.Errorf("gateway: configuration from the environment: %w", err)
				}
			}
			if err != nil {
				return fmt.Errorf("%w: %w", api.ErrInvalid, err)
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(g.streams.ErrOut, &slog.HandlerOptions{Level: level}))
			return gateway.Run(cmd.Context(), cfg, log)
		},
	}
	// Shadows the root's --config alias of --remote-config: a gateway never
	// reads the operator config.
	cmd.Flags().StringVar(&file, "config", "", "gateway config file (TOML, or JSON by extension)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log WireGuard handshakes and keepalives")
	cmd.AddCommand(newGatewayImageCommand(g), newBridgeRelayCommand(g))
	return cmd
}

func newGatewayImageCommand(g *globals) *cobra.Command {
	var file, ref string
	cmd := &cobra.Command{
		Use:   "image -o FILE",
		Short: "Write a FROM scratch OCI image archive of this bpm binary running `bpm gateway`",
		Long: `Write an OCI image layout (a tar archive) holding only this bpm binary as /bpm,
with entrypoint ["/bpm", "gateway"], for engines and clusters without a registry:
'docker load -i FILE' or 'ctr images import FILE'. The binary must be static
(built with CGO_ENABLED=0).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("-o FILE is required")
			}
			if ref == "" {
				ref = "bpm-gateway:" + version.Version
			}
			f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if err := gateway.WriteImageFromSelf(f, gateway.ImageOptions{RefName: ref}); err != nil {
				f.Close()
				os.Remove(file)
				return err
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			g.streams.Notice("wrote %s (%s)", file, ref)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "output", "o", "", "archive to write")
	cmd.Flags().StringVar(&ref, "tag", "", "image name the engine gives it (default bpm-gateway:VERSION)")
	return cmd
}
