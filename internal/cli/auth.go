package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
)

// authTimeout bounds one login or exchange: a handful of small requests
// to a proxy that is normally on this machine.
const authTimeout = 30 * time.Second

func newAuthCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Try the auth proxy: make an owner key, log in, get an access token",
		Long: `Client side of the auth proxy's flow (docs/AUTH.md): a service registers owner
public keys through the bridge; an owner proves it holds the private key
(challenge → signature) and gets a long-lived API key, then trades that for a
short-lived access token sent as "Authorization: Bearer …" with every request
through the proxy.

API keys and tokens are secrets. bpm never prints one to a terminal, where it
would stay in the scrollback and in screen recordings: give --save FILE (written
with mode 0600), send standard output to a pipe or a file, or say --show.
Private keys are never printed at all; key files must be mode 0600.`,
		Example: `  bpm auth keygen --key-type ecdsa -o owner.key
  ECHO_OWNERS=ecdsa:$(bpm auth pubkey --key owner.key) ...   # register the owner
  bpm auth login --service-id 7 --key owner.key --save api.key
  bpm auth token --api-key-file api.key --save token
  curl -H "Authorization: Bearer $(cat token)" http://127.0.0.1:8276/`,
		// A group with no Run of its own would print help and exit 0 for a
		// mistyped subcommand; a typo in a script should fail.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for \"bpm auth\"", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newAuthKeygenCommand(g), newAuthPubkeyCommand(g), newAuthLoginCommand(g), newAuthTokenCommand(g), newAuthKeyCommand(g))
	return cmd
}

// keyInfo is what keygen and pubkey print: public data only.
type keyInfo struct {
	KeyType   string `json:"key_type" yaml:"key_type"`
	PublicKey string `json:"public_key" yaml:"public_key"`
	// Owner is the key as ECHO_OWNERS (and other services) take it.
	Owner string `json:"owner" yaml:"owner"`
	File  string `json:"file" yaml:"file"`
}

func newKeyInfo(k authclient.Signer, file string) keyInfo {
	name := authclient.KeyTypeName(k.KeyType())
	pub := hex.EncodeToString(k.PublicKey())
	return keyInfo{KeyType: name, PublicKey: pub, Owner: name + ":" + pub, File: file}
}

func printKeyInfo(g *globals, out *outputFlag, ki keyInfo) error {
	// Table: the bare hex, so $(bpm auth pubkey …) drops into a config.
	return out.print(g.streams.Out, ki, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, ki.PublicKey) })
}

// looksLikeFormat catches `keygen -o json`: there -o names the key file
// (as in ssh-keygen and `tunnel export-peer`), and a key written to a file
// called "json" is surely not what was meant.
func looksLikeFormat(path string) bool {
	switch path {
	case "json", "yaml", "table":
		return true
	}
	return false
}

func newAuthKeygenCommand(g *globals) *cobra.Command {
	var keyType, file string
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "keygen --key-type ecdsa|sr25519 -o FILE",
		Short: "Make a new owner key and print its public key",
		Long: `Make a new owner key (ECDSA secp256k1 or sr25519) and write it to FILE with mode
0600; an existing file is never overwritten. The public key is printed in hex:
register it as a service owner (AddOwnerToService, or echo's ECHO_OWNERS as
ecdsa:<hex> / sr25519:<hex>). The file holds the 32-byte secret seed as JSON
{"key_type","secret_key"}; a Substrate seed (subkey's "Secret seed") in a bare
hex file works too, with --key-type on the commands that read it.

Here -o is the key file; --format json|yaml prints the public data as JSON or
YAML.`,
		Example: `  bpm auth keygen -o owner.key
  bpm auth keygen --key-type sr25519 -o owner-sr.key --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			kt, err := authclient.ParseKeyType(keyType)
			if err != nil {
				return usagef("--key-type: want ecdsa or sr25519, got %q", keyType)
			}
			switch {
			case file == "":
				return usagef("-o FILE is required: the private key is written to a file, never printed")
			case file == "-":
				return usagef("-o -: a private key is never written to standard output")
			case looksLikeFormat(file):
				return usagef("-o is the key file for keygen; for %s output use --format %s (or -o ./%s for a file of that name)", file, file, file)
			}
			k, err := authclient.GenerateKeyFile(file, kt)
			if err != nil {
				return err
			}
			ki := newKeyInfo(k, file)
			g.streams.Notice("wrote %s key to %s (mode 0600); register it as an owner: %s", ki.KeyType, file, ki.Owner)
			return printKeyInfo(g, &out, ki)
		},
	}
	cmd.Flags().StringVar(&keyType, "key-type", "ecdsa", "key type: ecdsa (secp256k1) or sr25519")
	cmd.Flags().StringVarP(&file, "out", "o", "", "write the private key to FILE (mode 0600; never overwritten)")
	cmd.Flags().StringVar(&out.format, "format", "table", "output format: table, json or yaml")
	return cmd
}

// keyFlags are --key and --key-type, for commands that read a key file.
type keyFlags struct {
	file, keyType string
}

func (k *keyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.file, "key", "", "private key file (mode 0600) from 'bpm auth keygen', or a bare hex seed")
	cmd.Flags().StringVar(&k.keyType, "key-type", "", "key type of a bare hex key file: ecdsa or sr25519 (JSON key files say it themselves)")
}

// validate checks the flags; load reads the key.
func (k *keyFlags) validate() (registry.KeyType, error) {
	if k.file == "" {
		return 0, usagef("--key FILE is required")
	}
	if k.keyType == "" {
		return registry.KeyTypeUnknown, nil
	}
	kt, err := authclient.ParseKeyType(k.keyType)
	if err != nil {
		return 0, usagef("--key-type: want ecdsa or sr25519, got %q", k.keyType)
	}
	return kt, nil
}

func (k *keyFlags) load(hint registry.KeyType) (authclient.PrivateKey, error) {
	key, err := authclient.LoadKeyFile(k.file, hint)
	if err != nil {
		return nil, secretFileErr(err)
	}
	return key, nil
}

// secretFileErr classifies a key or API key file problem: missing is "not
// found"; unreadable by mode, malformed or of the wrong type is invalid.
func secretFileErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &classified{err: err, kind: provider.ErrNotFound}
	}
	return &classified{err: err, kind: api.ErrInvalid}
}

func newAuthPubkeyCommand(g *globals) *cobra.Command {
	var kf keyFlags
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "pubkey --key FILE",
		Short: "Print the public key of an owner key file",
		Long: `Print the public key of an owner key file in hex: the bytes to register as a
service owner (AddOwnerToService, echo's ECHO_OWNERS). The private key is never
printed.`,
		Example: `  bpm auth pubkey --key owner.key
  bpm auth pubkey --key alice.seed --key-type sr25519 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			hint, err := kf.validate()
			if err != nil {
				return err
			}
			k, err := kf.load(hint)
			if err != nil {
				return err
			}
			return printKeyInfo(g, &out, newKeyInfo(k, kf.file))
		},
	}
	kf.register(cmd)
	out.register(cmd)
	return cmd
}

// secretOutput decides where a secret (API key, token) goes: a 0600 file
// with --save, standard output when that is not a terminal or with --show,
// and nowhere else.
type secretOutput struct {
	save string
	show bool
	out  outputFlag
}

func (s *secretOutput) register(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&s.save, "save", "", "write the "+what+" to FILE with mode 0600 (replacing it)")
	cmd.Flags().BoolVar(&s.show, "show", false, "print the "+what+" even when standard output is a terminal")
	s.out.register(cmd)
}

// check runs before anything is asked of the proxy, so a refusal never
// leaves a freshly minted secret with nowhere to go.
func (s *secretOutput) check(g *globals, what string) error {
	if err := s.out.validate(); err != nil {
		return err
	}
	if s.save == "-" {
		return usagef("--save -: to print the %s, pipe the output or use --show", what)
	}
	if s.save != "" {
		if fi, err := os.Stat(filepath.Dir(s.save)); err != nil || !fi.IsDir() {
			return usagef("--save %s: directory %s does not exist", s.save, filepath.Dir(s.save))
		}
		if fi, err := os.Stat(s.save); err == nil && fi.IsDir() {
			return usagef("--save %s is a directory", s.save)
		}
	}
	if s.save == "" && !s.show && isTerminal(g.streams.Out) {
		return usagef("refusing to print the %s to a terminal: use --save FILE (mode 0600), pipe the output, or add --show", what)
	}
	return nil
}

// printSecret reports whether the secret goes to standard output.
func (s *secretOutput) printSecret() bool { return s.save == "" || s.show }

// isTerminal reports whether w is a terminal. Only a real file descriptor
// can be one; the buffers tests inject never are.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// checkProxy checks --proxy before anything is signed, and warns when
// credentials would cross the network in clear.
func checkProxy(g *globals, proxyURL string) error {
	if _, err := authclient.Endpoint(proxyURL, "/"); err != nil {
		return usagef("--proxy: %v", strings.TrimPrefix(err.Error(), "authclient: "))
	}
	u, _ := url.Parse(proxyURL)
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		g.streams.Notice("warning: %s is plain HTTP to another machine: the signature and API key cross the network unencrypted", proxyURL)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// authErr gives proxy refusals their exit code: an unregistered service is
// "not found"; everything else is a plain error, whose message already
// carries the proxy's status and code.
func authErr(err error, proxyURL string) error {
	var pe *authclient.Error
	if errors.As(err, &pe) && pe.StatusCode == 404 {
		return &classified{err: err, kind: provider.ErrNotFound}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is the auth proxy running at %s?)", err, proxyURL)
	}
	return err
}

type loginResult struct {
	ServiceID uint64    `json:"service_id" yaml:"service_id"`
	KeyID     string    `json:"key_id" yaml:"key_id"`
	APIKey    string    `json:"api_key,omitempty" yaml:"api_key,omitempty"`
	ExpiresAt time.Time `json:"expires_at" yaml:"expires_at"`
	SavedTo   string    `json:"saved_to,omitempty" yaml:"saved_to,omitempty"`
}

func newAuthLoginCommand(g *globals) *cobra.Command {
	var proxyURL string
	var serviceID uint64
	var kf keyFlags
	var so secretOutput
	cmd := &cobra.Command{
		Use:   "login --service-id N --key FILE [--save FILE]",
		Short: "Prove you own a service's key and get an API key",
		Long: `Ask the proxy for a challenge for the key in FILE, sign it, and trade the
signature for an API key (valid 90 days on bpm's proxy). The key must be a
registered owner of the service.

The API key is a secret: with --save it is written to FILE (mode 0600,
replacing the file atomically) and not printed; otherwise it is printed only if
standard output is not a terminal (a pipe, a file) or with --show. On a
terminal without either, login refuses before asking the proxy for anything.`,
		Example: `  bpm auth login --service-id 7 --key owner.key --save api.key
  bpm auth login --proxy http://127.0.0.1:8276 --service-id 7 --key owner.key | bpm auth token --api-key-file - --save token
  bpm auth login --service-id 7 --key owner.key -o json > login.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("service-id") {
				return usagef("--service-id is required")
			}
			hint, err := kf.validate()
			if err != nil {
				return err
			}
			if err := checkProxy(g, proxyURL); err != nil {
				return err
			}
			if err := so.check(g, "API key"); err != nil {
				return err
			}
			k, err := kf.load(hint)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), authTimeout)
			defer cancel()
			cred, err := authclient.Login(ctx, proxyURL, serviceID, k)
			if err != nil {
				return authErr(err, proxyURL)
			}
			res := loginResult{ServiceID: serviceID, KeyID: cred.APIKey.ID(), ExpiresAt: cred.ExpiresAt.UTC()}
			if so.save != "" {
				if err := authclient.WriteSecretFile(so.save, cred.APIKey.Reveal()); err != nil {
					// The key exists on the proxy now; name it so it can be revoked.
					return fmt.Errorf("API key %s was issued but not saved: %w", res.KeyID, err)
				}
				res.SavedTo = so.save
				g.streams.Notice("API key %s for service %d saved to %s (mode 0600), valid until %s",
					res.KeyID, serviceID, so.save, res.ExpiresAt.Format(time.RFC3339))
				g.streams.Notice("next: bpm auth token --proxy %s --api-key-file %s", proxyURL, so.save)
			} else {
				g.streams.Notice("API key %s for service %d, valid until %s", res.KeyID, serviceID, res.ExpiresAt.Format(time.RFC3339))
			}
			if !so.printSecret() {
				if so.out.format == "table" {
					return nil
				}
				return so.out.print(g.streams.Out, res, nil)
			}
			res.APIKey = cred.APIKey.Reveal()
			return so.out.print(g.streams.Out, res, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, res.APIKey) })
		},
	}
	cmd.Flags().StringVar(&proxyURL, "proxy", authclient.DefaultProxyURL, "auth proxy URL")
	cmd.Flags().Uint64Var(&serviceID, "service-id", 0, "service id the key owns")
	kf.register(cmd)
	so.register(cmd, "API key")
	return cmd
}

type tokenResult struct {
	AccessToken string    `json:"access_token,omitempty" yaml:"access_token,omitempty"`
	TokenType   string    `json:"token_type" yaml:"token_type"`
	ExpiresAt   time.Time `json:"expires_at" yaml:"expires_at"`
	ExpiresIn   int64     `json:"expires_in" yaml:"expires_in"`
	SavedTo     string    `json:"saved_to,omitempty" yaml:"saved_to,omitempty"`
}

func newAuthTokenCommand(g *globals) *cobra.Command {
	var proxyURL, keyFile string
	var ttl time.Duration
	var so secretOutput
	cmd := &cobra.Command{
		Use:   "token --api-key-file FILE [--ttl 15m] [--save FILE]",
		Short: "Trade an API key for a short-lived access token",
		Long: `Trade the API key in FILE (mode 0600, as login --save writes it; "-" reads
standard input) for an access token to send as "Authorization: Bearer <token>"
with requests through the proxy. bpm's proxy grants at most 1 hour and never
beyond the API key's own life; bpm says so when it grants less than --ttl.

The token is printed the same careful way as login's API key: --save FILE
(mode 0600), or standard output when it is not a terminal, or --show.`,
		Example: `  bpm auth token --api-key-file api.key --save token
  curl -H "Authorization: Bearer $(bpm auth token --api-key-file api.key)" http://127.0.0.1:8276/
  bpm auth token --api-key-file api.key --ttl 1h -o json > token.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return usagef("--api-key-file FILE is required")
			}
			if cmd.Flags().Changed("ttl") && ttl < time.Second {
				return usagef("--ttl must be at least 1s, got %v", ttl)
			}
			if err := checkProxy(g, proxyURL); err != nil {
				return err
			}
			if err := so.check(g, "access token"); err != nil {
				return err
			}
			key, err := authclient.ReadAPIKeyFile(keyFile, g.streams.In)
			if err != nil {
				return secretFileErr(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), authTimeout)
			defer cancel()
			tok, err := authclient.Exchange(ctx, proxyURL, key, ttl)
			if err != nil {
				return authErr(err, proxyURL)
			}
			res := tokenResult{TokenType: tok.TokenType, ExpiresAt: tok.ExpiresAt.UTC(), ExpiresIn: int64(tok.ExpiresIn / time.Second)}
			if granted := tok.ExpiresIn; ttl > 0 && granted < ttl.Truncate(time.Second) {
				g.streams.Notice("the proxy granted %v (asked for %v)", granted, ttl)
			}
			if so.save != "" {
				if err := authclient.WriteSecretFile(so.save, tok.Token.Reveal()); err != nil {
					return err
				}
				res.SavedTo = so.save
				g.streams.Notice("access token saved to %s (mode 0600), valid until %s", so.save, res.ExpiresAt.Format(time.RFC3339))
			}
			if !so.printSecret() {
				if so.out.format == "table" {
					return nil
				}
				return so.out.print(g.streams.Out, res, nil)
			}
			res.AccessToken = tok.Token.Reveal()
			return so.out.print(g.streams.Out, res, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, res.AccessToken) })
		},
	}
	cmd.Flags().StringVar(&proxyURL, "proxy", authclient.DefaultProxyURL, "auth proxy URL")
	cmd.Flags().StringVar(&keyFile, "api-key-file", "", `file holding the API key (mode 0600), or "-" for standard input`)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "token lifetime to ask for (whole seconds; the proxy may grant less; default: the proxy's [proxy] token_ttl)")
	so.register(cmd, "access token")
	return cmd
}
