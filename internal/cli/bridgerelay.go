package cli

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/gateway"
)

// newBridgeRelayCommand is `bpm gateway bridge-relay`, the sidecar of an
// instance that cannot share a unix socket with its gateway (a Kubernetes
// pod). It lives under `gateway` so that the gateway image, whose
// entrypoint is ["/bpm", "gateway"], runs it with args ["bridge-relay"].
// Hidden: operators never run it by hand. Everything comes from the
// environment, so the relay token is never on a command line.
func newBridgeRelayCommand(g *globals) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:    "bridge-relay",
		Short:  "Serve an instance's bridge socket and relay it to the gateway (a pod sidecar)",
		Hidden: true,
		Long: `Serve the instance's BRIDGE_SOCKET_PATH and relay each connection to the
remote's gateway, which admits it by the instance's token. Settings come from the
environment only:

  ` + gateway.EnvRelayListen + `    the socket path (the instance's BRIDGE_SOCKET_PATH)
  ` + gateway.EnvRelayGateway + `   the gateway's relay address, host:port
  ` + gateway.EnvRelayInstance + `  the instance id
  ` + gateway.EnvRelayToken + `     the instance's relay token (from its secret)

With --check it only reports whether the socket is served (a startup probe).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if check {
				return gateway.CheckBridgeRelay(os.Getenv(gateway.EnvRelayListen))
			}
			cfg, err := gateway.RelayConfigFromEnv(os.Getenv)
			if err != nil {
				return fmt.Errorf("%w: %w", api.ErrInvalid, err)
			}
			log := slog.New(slog.NewTextHandler(g.streams.ErrOut, nil))
			return gateway.RunBridgeRelay(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "exit 0 when the socket is served, else 1")
	return cmd
}
