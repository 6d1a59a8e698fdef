package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
)

// FileName is the config file's name inside its directory.
const FileName = "config.toml"

// Config is a loaded, expanded and validated operator configuration.
type Config struct {
	// File is the path the config was read from; empty when no file existed
	// at the default location and built-in defaults apply.
	File       string
	Manager    Manager
	ServiceEnv ServiceEnv
	// Hub is the [hub] section, defaults applied.
	Hub Hub
	// Proxy is the [proxy] section, defaults applied.
	Proxy Proxy
	// Cost is the [cost] section, defaults applied.
	Cost Cost
	// Remotes holds every [remote.NAME] section by name. The implicit
	// "local" remote is not in it.
	Remotes map[string]*Remote

	// secrets holds every resolved secret value, so Redacted can also scrub
	// one that was copied into a field not marked secret. It is behind a
	// pointer because fmt prints a nested pointer as an address: %+v of a
	// Config must not print the values.
	secrets *secretSet
}

type secretSet struct {
	values []string
}

// Manager is the [manager] section. Empty values take the documented
// defaults at load.
type Manager struct {
	// DataDir holds state, instance data and logs.
	// Default $XDG_DATA_HOME/bpm, else ~/.local/share/bpm.
	DataDir string `toml:"data_dir" path:"true"`
	// RuntimeDir holds sockets. Default $XDG_RUNTIME_DIR/bpm, else <data_dir>/run.
	RuntimeDir string `toml:"runtime_dir" path:"true"`
	// Socket is the manager's local API socket. Default <runtime_dir>/manager.sock.
	Socket string `toml:"socket" path:"true"`
	// PackagePaths are searched for `--package NAME`.
	PackagePaths []string `toml:"package_paths" path:"true"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level"`
	// KeystoreDir holds bpm's encrypted keystore. Default <data_dir>/keystore.
	KeystoreDir string `toml:"keystore_dir" path:"true"`
}

// SlogLevel returns LogLevel as a slog.Level; the value was validated at load.
func (m Manager) SlogLevel() slog.Level {
	switch m.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ServiceEnv is the [service_env] section: what the Blueprint SDK passes to
// every service it runs (HTTP_RPC_URL, WS_RPC_URL, KEYSTORE_URI, PROTOCOL,
// CHAIN, BOOTNODES).
type ServiceEnv struct {
	HTTPRPCURL string `toml:"http_rpc_url"` // default http://127.0.0.1:9944
	WSRPCURL   string `toml:"ws_rpc_url"`   // default ws://127.0.0.1:9944
	// KeystoreURI is the services' own keystore, distinct from bpm's.
	// Default <data_dir>/keystore-sdk.
	KeystoreURI string `toml:"keystore_uri" path:"true"`
	Protocol    string `toml:"protocol"` // default tangle
	// Chain defaults to local_testnet when http_rpc_url points at 127.0.0.1
	// or localhost, else testnet, as the SDK does.
	Chain     string   `toml:"chain"`
	Bootnodes []string `toml:"bootnodes"`
}

// Remote is one [remote.NAME] section.
type Remote struct {
	Name string
	Type string
	// Settings is the provider's typed config struct pointer (what its
	// provider.Info.NewConfig returned), decoded, expanded and validated. It
	// is what provider.Env.Config carries.
	Settings any
	// Line is where the section starts in the file, for messages.
	Line int
}

// RemoteNames returns the configured remote names, sorted.
func (c *Config) RemoteNames() []string {
	names := make([]string, 0, len(c.Remotes))
	for n := range c.Remotes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Keystore resolves keystore:NAME references. *keystore.Keystore satisfies it.
type Keystore interface {
	Get(name string) (string, error)
}

// LoadOptions are the inputs a load takes from its surroundings, injectable so
// tests and the CLI control them.
type LoadOptions struct {
	// Getenv looks up variables for ${VAR} and the XDG defaults. Default
	// os.LookupEnv.
	Getenv func(string) (string, bool)
	// Keystore resolves keystore:NAME; nil means references are an error.
	Keystore Keystore
	// Home is the directory ~ stands for. Default $HOME (through Getenv),
	// else os.UserHomeDir.
	Home string
	// BaseDir is the directory relative paths are resolved against. Load
	// sets it to the config file's directory when empty; Parse leaves
	// relative paths relative when it is empty, and validation then reports
	// the manager's paths as not absolute.
	BaseDir string
}

func (o LoadOptions) getenv(k string) (string, bool) {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.LookupEnv(k)
}

// home returns the home directory or an error saying why ~ cannot be used.
func (o LoadOptions) home() (string, error) {
	if o.Home != "" {
		return o.Home, nil
	}
	if h, ok := o.getenv("HOME"); ok && h != "" {
		return h, nil
	}
	if o.Getenv == nil {
		if h, err := os.UserHomeDir(); err == nil && h != "" {
			return h, nil
		}
	}
	return "", errors.New("home directory unknown (HOME is not set)")
}

// DefaultPath returns where config.toml is looked for when no file is given:
// $BPM_CONFIG_DIR/config.toml, else $XDG_CONFIG_HOME/bpm/config.toml, else
// ~/.config/bpm/config.toml.
func DefaultPath() (string, error) {
	return defaultPath(LoadOptions{})
}

func defaultPath(o LoadOptions) (string, error) {
	if d, ok := o.getenv("BPM_CONFIG_DIR"); ok && d != "" {
		return filepath.Join(d, FileName), nil
	}
	// The XDG spec says relative values are invalid and must be ignored.
	if d, ok := o.getenv("XDG_CONFIG_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "bpm", FileName), nil
	}
	home, err := o.home()
	if err != nil {
		return "", fmt.Errorf("config: default path: %w; set BPM_CONFIG_DIR", err)
	}
	return filepath.Join(home, ".config", "bpm", FileName), nil
}

// Load reads and validates a config file. With path empty it reads the
// default location (see DefaultPath), and a missing file there means
// built-in defaults; an explicitly named file (--remote-config) must exist.
func Load(path string, opts LoadOptions) (*Config, error) {
	explicit := path != ""
	if !explicit {
		p, err := defaultPath(opts)
		if err != nil {
			return nil, err
		}
		path = p
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			cfg, err := Parse(nil, path, opts)
			if err != nil {
				return nil, err
			}
			cfg.File = ""
			return cfg, nil
		}
		return nil, fmt.Errorf("config: read: %w", err)
	}
	if opts.BaseDir == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config: resolve %s: %w", path, err)
		}
		opts.BaseDir = filepath.Dir(abs)
	}
	return Parse(data, path, opts)
}

// Parse decodes, expands and validates config text. file names the source in
// messages. Any problem makes it return an *Error listing all of them.
func Parse(data []byte, file string, opts LoadOptions) (*Config, error) {
	l := &loader{file: file, data: data, opts: opts}
	return l.load()
}
