package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/authclient"
)

// newAuthKeyCommand is `bpm auth key`: operators' API keys for services bpm
// runs, minted and revoked through the manager (no owner signature needed:
// the manager's 0600 socket is the operator's proof).
func newAuthKeyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Mint, list and revoke API keys for services bpm runs",
		Long: `Operators' API keys, kept by the manager's auth proxy (stored hashed). A key is
minted only for a service id that a live instance serves; trade it for an access
token with 'bpm auth token'. Revoking a key stops its tokens at once.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for \"bpm auth key\"", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newAuthKeyCreateCommand(g), newAuthKeyListCommand(g), newAuthKeyRevokeCommand(g))
	return cmd
}

// authKeyResult is what create prints; APIKey only when the key goes to
// standard output.
type authKeyResult struct {
	KeyID     string    `json:"key_id" yaml:"key_id"`
	ServiceID uint64    `json:"service_id" yaml:"service_id"`
	ExpiresAt time.Time `json:"expires_at" yaml:"expires_at"`
	Label     string    `json:"label,omitempty" yaml:"label,omitempty"`
	APIKey    string    `json:"api_key,omitempty" yaml:"api_key,omitempty"`
	SavedTo   string    `json:"saved_to,omitempty" yaml:"saved_to,omitempty"`
}

func newAuthKeyCreateCommand(g *globals) *cobra.Command {
	var serviceID uint64
	var ttl time.Duration
	var label string
	var so secretOutput
	cmd := &cobra.Command{
		Use:   "create --service-id N [--ttl 720h] [--label TEXT] [--save FILE]",
		Short: "Mint an API key for a service bpm runs",
		Long: `Mint an API key for service N (valid 90 days unless --ttl says otherwise, at most
8760h). The manager refuses a service id no live instance serves.

The key is shown once and only its hash is kept. It is a secret: with --save it
is written to FILE (mode 0600, replacing the file atomically) and not printed;
otherwise it is printed only if standard output is not a terminal (a pipe, a
file) or with --show. On a terminal without either, create refuses before
minting anything.`,
		Example: `  bpm auth key create --service-id 1 --save api.key
  bpm auth key create --service-id 1 --label ci --ttl 720h | bpm auth token --api-key-file - --save token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("service-id") {
				return usagef("--service-id is required")
			}
			if cmd.Flags().Changed("ttl") && (ttl < time.Second || ttl > api.MaxAuthKeyTTL) {
				return usagef("--ttl must be from 1s to 8760h, got %v", ttl)
			}
			if err := so.check(g, "API key"); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			req := api.AuthKeyRequest{ServiceID: &serviceID, Label: label}
			if cmd.Flags().Changed("ttl") {
				req.TTL = ttl.String()
			}
			created, err := c.CreateAuthKey(cmd.Context(), req)
			if err != nil {
				return err
			}
			res := authKeyResult{KeyID: created.KeyID, ServiceID: created.ServiceID, ExpiresAt: created.ExpiresAt.UTC(), Label: created.Label}
			if so.save != "" {
				if err := authclient.WriteSecretFile(so.save, created.APIKey.Reveal()); err != nil {
					// The key exists now; name it so it can be revoked.
					return fmt.Errorf("API key %s was minted but not saved (revoke it with bpm auth key revoke %s): %w", res.KeyID, res.KeyID, err)
				}
				res.SavedTo = so.save
				g.streams.Notice("API key %s for service %d saved to %s (mode 0600), valid until %s",
					res.KeyID, res.ServiceID, so.save, res.ExpiresAt.Format(time.RFC3339))
			} else {
				g.streams.Notice("API key %s for service %d, valid until %s (shown once)",
					res.KeyID, res.ServiceID, res.ExpiresAt.Format(time.RFC3339))
			}
			if !so.printSecret() {
				if so.out.format == "table" {
					return nil
				}
				return so.out.print(g.streams.Out, res, nil)
			}
			res.APIKey = created.APIKey.Reveal()
			return so.out.print(g.streams.Out, res, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, res.APIKey) })
		},
	}
	cmd.Flags().Uint64Var(&serviceID, "service-id", 0, "service id the key is for")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "key lifetime (default 90 days; at most 8760h)")
	cmd.Flags().StringVar(&label, "label", "", "a note to recognise the key by in 'bpm auth key list'")
	so.register(cmd, "API key")
	return cmd
}

func newAuthKeyListCommand(g *globals) *cobra.Command {
	var serviceID uint64
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "list [--service-id N]",
		Short: "List API keys (ids, services, expiry, labels; never the keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var sid *uint64
			if cmd.Flags().Changed("service-id") {
				sid = &serviceID
			}
			keys, err := c.AuthKeys(cmd.Context(), sid)
			if err != nil {
				return err
			}
			return out.print(g.streams.Out, api.AuthKeyList{Keys: keys}, func(tw *tabwriter.Writer) {
				row(tw, "KEY ID", "SERVICE", "STATE", "EXPIRES", "OWNER", "LABEL")
				for _, k := range keys {
					row(tw, k.KeyID, k.ServiceID, k.State, k.ExpiresAt.UTC().Format(time.RFC3339), k.Owner, k.Label)
				}
			})
		},
	}
	cmd.Flags().Uint64Var(&serviceID, "service-id", 0, "only the keys of this service")
	out.register(cmd)
	return cmd
}

func newAuthKeyRevokeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key; its tokens stop working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.RevokeAuthKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.streams.Out, "revoked %s (service %d)\n", k.KeyID, k.ServiceID)
			return nil
		},
	}
}
