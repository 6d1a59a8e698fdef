package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/bpm-project/bpm/internal/tomlstrict"
)

// applyDefaults fills every empty [manager], [service_env], [hub] and
// [proxy] value. The chain of defaults (data_dir, then runtime_dir, then
// socket) follows what the operator did set.
func (l *loader) applyDefaults(cfg *Config) {
	m := &cfg.Manager
	if m.DataDir == "" {
		if d, ok := l.opts.getenv("XDG_DATA_HOME"); ok && filepath.IsAbs(d) {
			m.DataDir = filepath.Join(d, "bpm")
		} else if home, err := l.opts.home(); err == nil {
			m.DataDir = filepath.Join(home, ".local", "share", "bpm")
		} else {
			l.probs.add(position{}, "manager.data_dir: no default: %s; set data_dir or XDG_DATA_HOME", err)
			return
		}
	}
	if m.RuntimeDir == "" {
		if d, ok := l.opts.getenv("XDG_RUNTIME_DIR"); ok && filepath.IsAbs(d) {
			m.RuntimeDir = filepath.Join(d, "bpm")
		} else {
			m.RuntimeDir = filepath.Join(m.DataDir, "run")
		}
	}
	if m.Socket == "" {
		m.Socket = filepath.Join(m.RuntimeDir, "manager.sock")
	}
	if m.LogLevel == "" {
		m.LogLevel = "info"
	}
	if m.KeystoreDir == "" {
		m.KeystoreDir = filepath.Join(m.DataDir, "keystore")
	}

	cfg.Hub.applyDefaults()
	cfg.Proxy.applyDefaults()
	cfg.Cost.applyDefaults()

	e := &cfg.ServiceEnv
	if e.HTTPRPCURL == "" {
		e.HTTPRPCURL = "http://127.0.0.1:9944"
	}
	if e.WSRPCURL == "" {
		e.WSRPCURL = "ws://127.0.0.1:9944"
	}
	if e.KeystoreURI == "" {
		e.KeystoreURI = filepath.Join(m.DataDir, "keystore-sdk")
	}
	if e.Protocol == "" {
		e.Protocol = "tangle"
	}
	if e.Chain == "" {
		// The SDK's own rule, so a service sees the chain it would see
		// under the SDK's manager.
		if strings.Contains(e.HTTPRPCURL, "127.0.0.1") || strings.Contains(e.HTTPRPCURL, "localhost") {
			e.Chain = "local_testnet"
		} else {
			e.Chain = "testnet"
		}
	}
}

var (
	logLevels = []string{"debug", "info", "warn", "error"}
	chains    = []string{"local_testnet", "local_mainnet", "testnet", "mainnet"}
)

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

func (l *loader) validate(cfg *Config) {
	var fe FieldErrors
	m := cfg.Manager
	for _, p := range []struct{ key, val string }{
		{"data_dir", m.DataDir}, {"runtime_dir", m.RuntimeDir}, {"socket", m.Socket}, {"keystore_dir", m.KeystoreDir},
	} {
		if !filepath.IsAbs(p.val) {
			fe.Add("manager."+p.key, "%q is not an absolute path", p.val)
		}
	}
	if len(m.Socket) > maxSocketPath {
		fe.Add("manager.socket", "path is %d bytes; a unix socket path may be at most %d", len(m.Socket), maxSocketPath)
	}
	for i, p := range m.PackagePaths {
		if p == "" {
			fe.Add(fmt.Sprintf("manager.package_paths[%d]", i), "empty path")
		}
	}
	if !slices.Contains(logLevels, m.LogLevel) {
		fe.Add("manager.log_level", "%q is not one of %s", m.LogLevel, strings.Join(logLevels, ", "))
	}

	e := cfg.ServiceEnv
	checkURL(&fe, "service_env.http_rpc_url", e.HTTPRPCURL, "http", "https")
	checkURL(&fe, "service_env.ws_rpc_url", e.WSRPCURL, "ws", "wss")
	if !identRE.MatchString(e.Protocol) {
		fe.Add("service_env.protocol", "%q is not a protocol name (for example tangle)", e.Protocol)
	}
	if !slices.Contains(chains, e.Chain) {
		fe.Add("service_env.chain", "%q is not one of %s", e.Chain, strings.Join(chains, ", "))
	}
	for i, b := range e.Bootnodes {
		if !strings.HasPrefix(b, "/") || strings.ContainsAny(b, " \t\n") {
			fe.Add(fmt.Sprintf("service_env.bootnodes[%d]", i), "%q is not a multiaddr (for example /ip4/1.2.3.4/tcp/30333/p2p/12D3...)", b)
		}
	}
	l.addFieldErrors("", fe.Err())
	l.addFieldErrors("hub", cfg.Hub.Validate())
	l.addFieldErrors("proxy", cfg.Proxy.Validate())
	l.addFieldErrors("cost", cfg.Cost.Validate())

	for _, name := range cfg.RemoteNames() {
		r := cfg.Remotes[name]
		v, ok := r.Settings.(interface{ Validate() error })
		if !ok {
			continue
		}
		l.addFieldErrors(tomlstrict.DisplayKey([]string{"remote", name}), v.Validate())
	}
}

// addFieldErrors records a Validate result, each problem at its key's line.
func (l *loader) addFieldErrors(prefix string, err error) {
	for _, f := range FlattenFieldErrors(err) {
		key := joinField(prefix, f.Field)
		if key == "" {
			l.probs.add(position{}, "%s", f.Msg)
			continue
		}
		l.probs.add(l.keys.Pos(key), "%s: %s", key, f.Msg)
	}
}

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

func checkURL(fe *FieldErrors, key, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		fe.Add(key, "%q is not a %s URL with a host", raw, strings.Join(schemes, " or "))
	}
}
