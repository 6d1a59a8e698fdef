package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/tunnel"
	"github.com/bpm-project/bpm/internal/version"
)

// LocalRemote is the name of the implicit default remote: this machine.
const LocalRemote = "local"

// Options configure a Manager.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// HealthInterval is how often the health loop wakes to check the
	// instances that are due; default one second. Each instance is checked
	// at its manifest's [health] interval (default 10s).
	HealthInterval time.Duration
	// StartGrace is how long a new instance may fail its health check and
	// still count as starting; default one minute.
	StartGrace time.Duration
	// LocalOverride, when set, adjusts the local provider's options before
	// it is built (tests point the supervisor and the executable at their
	// own re-executed binary).
	LocalOverride func(*local.Options)
	// Keystore opens bpm's keystore. The manager calls it only when the
	// WireGuard hub first starts (its key and generated remote keys are
	// kept there), so a local-only operator needs no passphrase. Nil means
	// no keystore: the hub then refuses to start, naming the variables
	// that would provide one.
	Keystore func() (Keystore, error)
}

// Manager orchestrates instances. Create it with New, serve with Serve, and
// release it with Close.
type Manager struct {
	cfg       *config.Config
	log       *slog.Logger
	store     *state.Store
	lockFile  *os.File
	started   time.Time
	healthInt time.Duration
	// startGrace is how long a new instance may fail its health check
	// before it counts as degraded rather than still starting.
	startGrace time.Duration

	local provider.Provider
	cache instanceCache
	// hubs is the WireGuard hub, started when a remote first needs it.
	hubs hubState
	// registry maps service ids to upstreams (instances with a port).
	registry *registry.Registry
	// proxy is the auth proxy routing by the registry.
	proxy proxyState
	// bridges are the local and remote instances' bridges.
	bridges bridgeSet
	// rbridges is the hub's bridge mux for remote instances.
	rbridges remoteBridgeState

	mu        sync.Mutex
	providers map[string]provider.Provider // by remote name
	instLocks map[string]*sync.Mutex
	// checks holds each live instance's health schedule (under mu).
	checks map[string]*healthSchedule

	// cost: the meter's clock, rates and alert deliveries (cost.go).
	cost costState
}

// New opens state, takes the manager lock (one manager per data dir) and
// builds the local provider. It does not reconcile; call Reconcile.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Config == nil {
		return nil, errors.New("manager: no config")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	if err := os.MkdirAll(cfg.Manager.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("manager: create data dir: %w", err)
	}
	lock, err := takeLock(filepath.Join(cfg.Manager.DataDir, "manager.lock"))
	if err != nil {
		return nil, err
	}
	store, err := state.Open(ctx, filepath.Join(cfg.Manager.DataDir, "state.db"))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	m := &Manager{
		cfg:       cfg,
		log:       log,
		store:     store,
		lockFile:  lock,
		started:   time.Now(),
		healthInt: opts.HealthInterval,
		providers: map[string]provider.Provider{},
		instLocks: map[string]*sync.Mutex{},
		checks:    map[string]*healthSchedule{},
	}
	if err := m.cache.load(ctx, store); err != nil {
		m.Close()
		return nil, err
	}
	// Neither the allocator nor the registry does network I/O or needs the
	// keystore, so both exist from the start; only the hub is lazy.
	m.hubs.open = opts.Keystore
	if m.hubs.alloc, err = tunnel.NewAllocator(cfg.Hub.Prefix(), metaStore{store}); err != nil {
		m.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	if m.registry, err = registry.Open(ctx, registryStore{store}, log.With("component", "registry")); err != nil {
		m.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	if err := m.newProxy(ctx); err != nil {
		m.Close()
		return nil, err
	}
	if m.healthInt <= 0 {
		m.healthInt = time.Second
	}
	m.startGrace = opts.StartGrace
	if m.startGrace <= 0 {
		m.startGrace = time.Minute
	}
	lopts := local.Options{
		DataDir:    filepath.Join(cfg.Manager.DataDir, "local"),
		RuntimeDir: cfg.Manager.RuntimeDir,
		Logger:     log.With("remote", LocalRemote),
		Executable: func(ctx context.Context, pkg *blueprint.Package) (string, []string, error) {
			return pkg.Executable(ctx, filepath.Join(cfg.Manager.DataDir, "cache", "bin"), runtime.GOOS, runtime.GOARCH)
		},
	}
	if opts.LocalOverride != nil {
		opts.LocalOverride(&lopts)
	}
	lp, err := local.New(lopts)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("manager: local provider: %w", err)
	}
	m.local = lp
	m.providers[LocalRemote] = lp
	return m, nil
}

// takeLock holds an exclusive flock for the manager's lifetime so two
// managers never share one state database.
func takeLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("manager: open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("manager: another bpm manager is running on %s", filepath.Dir(path))
		}
		return nil, fmt.Errorf("manager: lock %s: %w", path, err)
	}
	return f, nil
}

// Close stops the bridges (keeping the services' records), the proxy and
// the hub, and releases state and the lock. Instances keep running; their
// services reconnect to the next manager's bridges, and gateways
// re-handshake with its hub.
func (m *Manager) Close() error {
	m.stopBridges()
	m.closeProxy()
	m.closeHub()
	m.mu.Lock()
	for _, p := range m.providers {
		if c, ok := p.(provider.Closer); ok {
			c.Close()
		}
	}
	m.mu.Unlock()
	var err error
	if m.store != nil {
		err = m.store.Close()
	}
	if m.lockFile != nil {
		m.lockFile.Close()
	}
	return err
}

// Store exposes the state store (benchmarks and tests).
func (m *Manager) Store() *state.Store { return m.store }

// Info describes the manager.
func (m *Manager) Info() api.ManagerInfo {
	return api.ManagerInfo{
		Version:       version.Version,
		RemoteSupport: provider.HasRemote(),
		Providers:     provider.Types(),
		Remotes:       m.cfg.RemoteNames(),
		StatePath:     m.store.Path(),
		PID:           os.Getpid(),
		StartedAt:     m.started,
		ProxyURL:      m.ProxyURL(),
	}
}

// lockInstance serialises deploy, terminate and health updates of one
// instance.
func (m *Manager) lockInstance(id string) func() {
	m.mu.Lock()
	l, ok := m.instLocks[id]
	if !ok {
		l = &sync.Mutex{}
		m.instLocks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// providerFor returns the provider serving a remote, building it on first use.
func (m *Manager) providerFor(ctx context.Context, remote string) (provider.Provider, error) {
	if remote == "" {
		remote = LocalRemote
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.providers[remote]; ok {
		return p, nil
	}
	rc, ok := m.cfg.Remotes[remote]
	if !ok {
		return nil, fmt.Errorf("remote %q: %w in config (configured: %v)", remote, provider.ErrNotFound, m.cfg.RemoteNames())
	}
	p, err := provider.New(ctx, rc.Type, provider.Env{
		Remote:     remote,
		Config:     rc.Settings,
		DataDir:    filepath.Join(m.cfg.Manager.DataDir, "remotes", remote),
		RuntimeDir: m.cfg.Manager.RuntimeDir,
		Logger:     m.log.With("remote", remote),
		RemoteCheck: func(ctx context.Context, site string, spec health.Spec) error {
			return m.remoteCheck(ctx, provider.PeerName(remote, site), spec)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("remote %q: %w", remote, err)
	}
	m.providers[remote] = p
	return p, nil
}
