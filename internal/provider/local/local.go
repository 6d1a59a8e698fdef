package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// Type is the registry name of this provider.
const Type = "local"

// ExecutableFunc resolves a package to the program that runs it: an
// absolute path (a relative one is taken relative to pkg.Dir) and its
// arguments. The blueprint package's fetch/verify/build logic plugs in here.
type ExecutableFunc func(ctx context.Context, pkg *blueprint.Package) (path string, args []string, err error)

// StaticExecutable returns an ExecutableFunc that runs path with args for
// every package; for tests and for callers that resolved the binary already.
func StaticExecutable(path string, args ...string) ExecutableFunc {
	return func(context.Context, *blueprint.Package) (string, []string, error) {
		return path, args, nil
	}
}

// Options configure a Provider. Zero values take the documented defaults.
type Options struct {
	// DataDir holds instances/<id>/. Required.
	DataDir string
	// RuntimeDir is the base of bridge sockets:
	// <RuntimeDir>/svc-<bid>-<sid>/svc-<bid>-<sid>.sock is passed to the
	// service as BRIDGE_SOCKET_PATH. Default <DataDir>/run.
	RuntimeDir string
	// SupervisorCommand starts a supervisor; "--dir DIR" is appended.
	// Default: this executable with the "supervise" subcommand.
	SupervisorCommand []string
	// SupervisorEnv is added to the supervisor's own environment, which is
	// otherwise only PATH, HOME, LANG and TZ: the manager's environment may
	// hold credentials that a long-lived helper has no business keeping.
	SupervisorEnv []string
	// GracePeriod between SIGTERM and SIGKILL on stop. Default 10s.
	GracePeriod time.Duration
	// Restart and Logs tune the supervisor; zero fields take its defaults
	// (on-failure, 250ms doubling to 30s; 10 MiB x 3 files).
	Restart supervisor.Restart
	Logs    supervisor.Logs
	// WorkDir is the service's working directory. Default: the manager's
	// working directory when New runs, as the Blueprint SDK's native
	// runtime does, so relative paths such as KEYSTORE_URI=./keystore keep
	// meaning what they meant before bpm.
	WorkDir string
	// StartTimeout bounds how long Deploy waits for the service process to
	// exist. Default 30s.
	StartTimeout time.Duration
	// Executable resolves a package to its program. Default: an error
	// saying no resolver is configured.
	Executable ExecutableFunc
	Logger     *slog.Logger
}

// Provider runs instances as supervised native processes.
type Provider struct {
	opts   Options
	dir    string // <DataDir>/instances
	logger *slog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// portMu serialises the claim of ports across deploys (see portsFree).
	portMu sync.Mutex
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Logser   = (*Provider)(nil)
	_ provider.Lister   = (*Provider)(nil)
)

// Info is the registry entry for the local provider. Its New builds a
// provider from the manager's Env with default Options and no Executable
// resolver; a manager that deploys calls NewFromEnv with the resolver.
func Info() provider.Info {
	return provider.Info{
		Type:        Type,
		Remote:      false,
		Description: "native processes on this machine, each under its own supervisor",
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			return NewFromEnv(env, Options{})
		},
	}
}

// NewFromEnv builds a provider from the manager's Env; fields already set in
// opts win over env.
func NewFromEnv(env provider.Env, opts Options) (*Provider, error) {
	if opts.DataDir == "" {
		opts.DataDir = env.DataDir
	}
	if opts.RuntimeDir == "" {
		opts.RuntimeDir = env.RuntimeDir
	}
	if opts.Logger == nil {
		opts.Logger = env.Logger
	}
	return New(opts)
}

// New builds a provider.
func New(opts Options) (*Provider, error) {
	if opts.DataDir == "" {
		return nil, errors.New("local: data dir is required")
	}
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("local: data dir: %w", err)
	}
	opts.DataDir = abs
	if opts.RuntimeDir == "" {
		opts.RuntimeDir = filepath.Join(opts.DataDir, "run")
	}
	if opts.RuntimeDir, err = filepath.Abs(opts.RuntimeDir); err != nil {
		return nil, fmt.Errorf("local: runtime dir: %w", err)
	}
	if len(opts.SupervisorCommand) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local: find own executable for the supervisor: %w", err)
		}
		opts.SupervisorCommand = []string{self, "supervise"}
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = supervisor.DefaultGracePeriod
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.WorkDir == "" {
		if opts.WorkDir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("local: working directory: %w", err)
		}
	}
	if opts.Executable == nil {
		opts.Executable = func(context.Context, *blueprint.Package) (string, []string, error) {
			return "", nil, errors.New("no executable resolver configured (local.Options.Executable)")
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		opts:   opts,
		dir:    filepath.Join(opts.DataDir, "instances"),
		logger: opts.Logger.With("provider", Type),
		locks:  map[string]*sync.Mutex{},
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: create %s: %w", p.dir, err)
	}
	return p, nil
}

// Type implements provider.Provider.
func (p *Provider) Type() string { return Type }

// lock serialises operations on one instance within this process; the
// supervisor's flock covers other processes.
func (p *Provider) lock(id string) func() {
	p.mu.Lock()
	l, ok := p.locks[id]
	if !ok {
		l = &sync.Mutex{}
		p.locks[id] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Resources reports this machine's CPUs and available memory. Instances is
// -1: the local machine sets no count limit.
func (p *Provider) Resources(ctx context.Context) (provider.Resources, error) {
	mem, err := memAvailable()
	if err != nil {
		return provider.Resources{}, fmt.Errorf("local: resources: %w", err)
	}
	return provider.Resources{
		CPUMillis:   int64(runtime.NumCPU()) * 1000,
		MemoryBytes: mem,
		Instances:   -1,
	}, nil
}

func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemAvailable" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: %w", err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("meminfo: no MemAvailable line")
}

// EstimateCost: the operator already pays for this machine.
func (p *Provider) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{HourlyUSD: 0, Detail: "local machine"}, nil
}

// EstablishTunnel: local instances are reached directly, never through a
// tunnel.
func (p *Provider) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	return provider.TunnelInfo{}, fmt.Errorf("local: tunnel: %w", provider.ErrUnsupported)
}
