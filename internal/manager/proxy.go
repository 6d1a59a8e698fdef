package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/bpm-project/bpm/internal/authproxy"
)

// proxyState is the auth proxy the manager serves: built at New (so the key
// API works even before it listens), bound by ListenProxy, served by Serve.
type proxyState struct {
	srv *authproxy.Server

	mu sync.Mutex
	ln net.Listener // nil until ListenProxy
	// url is what Info reports once the listener is bound.
	url string
}

// tokenKeyFile is where the proxy's PASETO key lives: outside the state
// database (which holds no secrets) and outside the keystore, so a
// local-only operator needs no passphrase.
func tokenKeyFile(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "private")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("manager: auth proxy: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("manager: auth proxy: %w", err)
	}
	return filepath.Join(dir, "paseto.key"), nil
}

// newProxy builds the auth proxy over the manager's registry, with API keys
// in the same Meta-backed store and tunnel routes dialled through the hub.
func (m *Manager) newProxy(ctx context.Context) error {
	path, err := tokenKeyFile(m.cfg.Manager.DataDir)
	if err != nil {
		return err
	}
	tk, err := authproxy.LoadOrCreateTokenKeyFile(path)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	keys, err := authproxy.OpenKeyStore(ctx, registryStore{m.store})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	srv, err := authproxy.New(authproxy.Config{
		Registry:        m.registry,
		Keys:            keys,
		TokenKey:        tk,
		Dialers:         tunnelDialers{m},
		Logger:          m.log.With("component", "authproxy"),
		TokenTTL:        m.cfg.Proxy.TokenTTLDuration(),
		AllowRawAPIKeys: m.cfg.Proxy.AllowRawAPIKeys,
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	m.proxy.srv = srv
	return nil
}

// tunnelDialers gives the proxy the hub's dialer for a tunnel route's
// gateway (the remote's name), looked up per connection so a hub started
// after the proxy is found.
type tunnelDialers struct{ m *Manager }

func (d tunnelDialers) DialerFor(gateway string) (authproxy.Dialer, error) {
	pd, err := d.m.TunnelDialer(gateway)
	if err != nil {
		return nil, err
	}
	return pd, nil
}

// ListenProxy binds the auth proxy's [proxy] listen address; Serve then
// serves it. A taken port is a startup error naming the address and the
// config key, since the operator can only fix it there.
func (m *Manager) ListenProxy(ctx context.Context) error {
	addr := m.cfg.Proxy.Listen
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("manager: auth proxy: cannot listen on %s (set another address with [proxy] listen in %s): %w",
			addr, m.configName(), err)
	}
	m.proxy.mu.Lock()
	defer m.proxy.mu.Unlock()
	if m.proxy.ln != nil {
		ln.Close()
		return errors.New("manager: auth proxy: already listening")
	}
	m.proxy.ln = ln
	m.proxy.url = proxyURL(ln.Addr().(*net.TCPAddr))
	m.log.Info("auth proxy listening", "addr", ln.Addr().String())
	return nil
}

func (m *Manager) configName() string {
	if m.cfg.File == "" {
		return "config.toml"
	}
	return m.cfg.File
}

// proxyURL is the URL a client on this machine uses: an unspecified listen
// host (every address, dual-stack) is reached on 127.0.0.1.
func proxyURL(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP == nil || a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(a.Port)) + "/"
}

// ProxyURL returns the auth proxy's URL, or "" before ListenProxy.
func (m *Manager) ProxyURL() string {
	m.proxy.mu.Lock()
	defer m.proxy.mu.Unlock()
	return m.proxy.url
}

// serveProxy serves the bound proxy until ctx ends (graceful, then hard);
// it returns at once when ListenProxy was not called.
func (m *Manager) serveProxy(ctx context.Context) error {
	m.proxy.mu.Lock()
	ln := m.proxy.ln
	m.proxy.mu.Unlock()
	if ln == nil {
		return nil
	}
	return m.proxy.srv.Serve(ctx, ln)
}

// closeProxy releases the proxy: a listener that was never served, and the
// proxy's registry subscription and idle upstream connections.
func (m *Manager) closeProxy() {
	m.proxy.mu.Lock()
	if m.proxy.ln != nil {
		m.proxy.ln.Close() // a no-op error after Serve has closed it
	}
	m.proxy.mu.Unlock()
	if m.proxy.srv != nil {
		m.proxy.srv.Close()
	}
}
