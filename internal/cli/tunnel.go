package cli

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newTunnelCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Inspect the WireGuard hub and export peer configs",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTunnelStatusCommand(g), newTunnelExportPeerCommand(g))
	return cmd
}

func newTunnelStatusCommand(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the hub's peers with tunnel address, last handshake, bytes and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.TunnelPeers(cmd.Context())
			if err != nil {
				return err
			}
			// The hub's line goes to stderr so the table stays parseable.
			if out.format == "table" {
				if st.Hub.Running {
					g.streams.Notice("hub %s at %s, listening on UDP %d, endpoint %s", st.Hub.Address, st.Hub.CIDR, st.Hub.ListenPort, st.Hub.Endpoint)
				} else {
					g.streams.Notice("hub not running (it starts when a remote needs it)")
				}
			}
			return out.print(g.streams.Out, st, func(tw *tabwriter.Writer) {
				row(tw, "REMOTE", "ADDRESS", "ENDPOINT", "LAST HANDSHAKE", "RX", "TX", "HEALTH")
				for _, p := range st.Peers {
					hs := "never"
					if p.LastHandshake != nil {
						hs = time.Since(*p.LastHandshake).Truncate(time.Second).String() + " ago"
					}
					ep := p.Endpoint
					if ep == "" {
						ep = "-"
					}
					row(tw, p.Remote, p.Address, ep, hs, p.RxBytes, p.TxBytes, p.Health)
				}
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newTunnelExportPeerCommand(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "export-peer NAME",
		Short: "Write a remote's WireGuard config in the wg-quick format",
		Long: `Write the standard WireGuard (wg-quick) config for remote NAME, so a plain
WireGuard peer (a VM, a home-lab box) can join the hub by hand:

  bpm tunnel export-peer homelab -o /etc/wireguard/bpm0.conf && wg-quick up bpm0

The file contains the remote's private key: with -o it is written with mode 0600.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			pc, err := c.TunnelPeerConfig(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if file == "" || file == "-" {
				_, err = fmt.Fprint(g.streams.Out, pc.Config)
				return err
			}
			if err := os.WriteFile(file, []byte(pc.Config), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			// WriteFile keeps an existing file's mode; tighten it.
			if err := os.Chmod(file, 0o600); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "output", "o", "", "write the config to FILE (mode 0600) instead of stdout")
	return cmd
}
