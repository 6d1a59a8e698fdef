package ssh

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/provider"
)

// Type is the provider's registry name.
const Type = "ssh"

// Config is a [remote.NAME] section of type "ssh".
type Config struct {
	Type string `toml:"type"`
	// Hosts are the machines instances are spread over: "host",
	// "host:port" or "[v6addr]:port".
	Hosts []string `toml:"hosts"`
	// User logs in on every host; empty means the local user name.
	User string `toml:"user"`
	// Key is the private key file; empty means the keys of ssh-agent
	// ($SSH_AUTH_SOCK).
	Key string `toml:"key" path:"true"`
	// KeyPassphrase unlocks Key when it is encrypted.
	KeyPassphrase config.Secret `toml:"key_passphrase" secret:"true"`
	// Port is used for hosts that name none. Default 22.
	Port int `toml:"port"`
	// KnownHosts is the known_hosts file host keys are checked against;
	// empty means ~/.ssh/known_hosts.
	KnownHosts string `toml:"known_hosts" path:"true"`
	// SSHConfig is the OpenSSH client config whose HostName, Port, User,
	// IdentityFile and ProxyJump apply to the hosts, as for ssh; empty
	// means ~/.ssh/config (if any), /dev/null means none.
	SSHConfig string `toml:"ssh_config" path:"true"`
	// TrustOnFirstUse accepts and records the key of a host not yet in
	// KnownHosts. Off by default: an unknown key is refused.
	TrustOnFirstUse bool `toml:"trust_on_first_use"`
	// MaxInstances caps how many instances bpm runs over all hosts; 0
	// means no cap.
	MaxInstances int `toml:"max_instances"`

	Runtime Runtime       `toml:"runtime"`
	Tunnel  config.Tunnel `toml:"tunnel"`
	// Pricing is how bpm prices instances here (see docs/COST.md).
	Pricing config.Pricing `toml:"pricing"`
}

// Runtime is the [remote.NAME.runtime] sub-table: how instances run on the
// hosts.
type Runtime struct {
	// Type is "docker" (containers through the host's Docker Engine) or
	// "native" (processes supervised by bpm). Default docker.
	Type string `toml:"type"`
	// DockerSocket is the Docker Engine socket on the host, for type
	// docker. Default unix:///var/run/docker.sock. It is a path on the
	// remote host, so ~ is not expanded here.
	DockerSocket string `toml:"docker_socket"`
}

// The runtime types.
const (
	RuntimeDocker = "docker"
	RuntimeNative = "native"
)

// DefaultDockerSocket is the Docker socket used when none is set.
const DefaultDockerSocket = "unix:///var/run/docker.sock"

// NewConfig returns a config holding the defaults.
func NewConfig() *Config {
	return &Config{Type: Type, Port: 22, Runtime: Runtime{Type: RuntimeDocker}}
}

// Info registers the provider type.
func Info() provider.Info {
	return provider.Info{
		Type:        Type,
		Remote:      true,
		Description: "hosts reached over SSH, running Docker containers or native processes",
		NewConfig:   func() any { return NewConfig() },
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			cfg, ok := env.Config.(*Config)
			if !ok {
				return nil, fmt.Errorf("%s provider: config is %T, want *ssh.Config", Type, env.Config)
			}
			// A package's native binary for the host's platform: a native
			// source verified against its sha256, or a testing source built
			// for that platform, cached content-addressed in the remote's
			// data dir.
			cache := filepath.Join(env.DataDir, "cache", "bin")
			return New(cfg, Options{Remote: env.Remote, Logger: env.Logger,
				Executable: func(ctx context.Context, pkg *blueprint.Package, pl Platform) (string, []string, error) {
					return pkg.Executable(ctx, cache, pl.OS, pl.Arch)
				}})
		},
	}
}

// userRE is the portable POSIX user name set, which also keeps the name
// safe on the ssh command line and in paths.
var userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)

// Validate reports every problem with the section.
func (c *Config) Validate() error {
	var fe config.FieldErrors
	if len(c.Hosts) == 0 {
		fe.Add("hosts", "at least one host is required")
	}
	seen := map[string]bool{}
	for i, h := range c.Hosts {
		key := fmt.Sprintf("hosts[%d]", i)
		addr, err := hostAddr(h, c.Port)
		if err != nil {
			fe.Add(key, "%q: %s", h, err)
			continue
		}
		if seen[addr] {
			fe.Add(key, "%q is listed twice", h)
		}
		seen[addr] = true
	}
	if c.User != "" && !userRE.MatchString(c.User) {
		fe.Add("user", "%q is not a user name", c.User)
	}
	if !c.KeyPassphrase.IsZero() && c.Key == "" {
		fe.Add("key_passphrase", "set, but key is not: the passphrase unlocks the key file")
	}
	if c.Port < 1 || c.Port > 65535 {
		fe.Add("port", "%d: must be in 1..65535", c.Port)
	}
	if c.MaxInstances < 0 {
		fe.Add("max_instances", "%d: must be 0 (no cap) or more", c.MaxInstances)
	}
	switch c.Runtime.Type {
	case RuntimeDocker:
		if s := c.Runtime.DockerSocket; s != "" {
			u, err := url.Parse(s)
			if err != nil || u.Scheme != "unix" || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
				fe.Add("runtime.docker_socket", "%q: write unix:///absolute/path (the socket on the host)", s)
			}
		}
	case RuntimeNative:
		if c.Runtime.DockerSocket != "" {
			fe.Add("runtime.docker_socket", "only applies to runtime type %q", RuntimeDocker)
		}
	default:
		fe.Add("runtime.type", "%q must be %q or %q", c.Runtime.Type, RuntimeDocker, RuntimeNative)
	}
	fe.Nest("tunnel", c.Tunnel.Validate())
	if c.Tunnel.PrivateKey != "" {
		// One key cannot serve several gateways (WireGuard would move the
		// peer between them): each host's gateway gets its own, generated
		// and kept in the keystore.
		fe.Add("tunnel.private_key", "an ssh remote runs a gateway per host, each with its own generated key; remove it")
	}
	fe.Nest("pricing", c.Pricing.Validate())
	return fe.Err()
}

// hostAddr normalises a hosts entry to host:port.
func hostAddr(h string, defPort int) (string, error) {
	if h == "" || strings.ContainsAny(h, " \t\r\n@/") || strings.HasPrefix(h, "-") {
		// "-" would read as an option to ssh; "@" belongs in user.
		return "", fmt.Errorf("not a host name or address (the user goes in user, not here)")
	}
	host, port := h, strconv.Itoa(defPort)
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		host, port, err = net.SplitHostPort(h)
		if err != nil {
			return "", fmt.Errorf("not host or host:port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port must be a number in 1..65535")
		}
	} else if strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return "", fmt.Errorf("not host or host:port (write IPv6 with a port as [addr]:port)")
	}
	if host == "" {
		return "", fmt.Errorf("empty host")
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

// PricingConfig exposes the [pricing] sub-table to the cost package
// without it importing this provider.
func (c *Config) PricingConfig() config.Pricing { return c.Pricing }
