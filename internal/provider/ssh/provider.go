package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/docker"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// Platform is a host's operating system and architecture in Go's terms.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ExecutableFunc resolves a package to the native program that runs it on
// a host of the given platform: a local file to upload, and its arguments.
type ExecutableFunc func(ctx context.Context, pkg *blueprint.Package, pl Platform) (path string, args []string, err error)

// Options are what the manager, not the config file, decides.
type Options struct {
	// Binary is the bpm executable uploaded to run `bpm supervise` on the
	// hosts. Default: this process's executable. It must be built for the
	// hosts' platform.
	Binary string
	// BinaryPlatform is what Binary was built for. Default: this process's.
	BinaryPlatform Platform
	// Executable resolves a package to its native binary (runtime native).
	Executable ExecutableFunc
	// BaseDir is bpm's directory on each host, relative to the login
	// user's home unless absolute. Default ".bpm".
	BaseDir string
	// GracePeriod between SIGTERM and SIGKILL on stop. Default 10s.
	GracePeriod time.Duration
	// StartTimeout bounds how long Deploy waits for the service process.
	// Default 30s.
	StartTimeout time.Duration
	// DialTimeout bounds connecting to one host. Default 15s.
	DialTimeout time.Duration
	// KeepAlive is how often each host connection must answer; three
	// missed answers drop it, failing what waits on it. Default 15s.
	KeepAlive time.Duration
	// Remote is the remote's name. The docker runtime needs it: it is the
	// ownership label on every container and names the remote's private
	// network on each host's engine.
	Remote string
	// Progress receives image load and pull progress of the docker
	// runtime; default os.Stderr (a notice, never a result).
	Progress io.Writer
	Logger   *slog.Logger
}

// Provider runs instances on the hosts of one ssh remote.
type Provider struct {
	cfg   *Config
	opts  Options
	hosts []string // host:port, in config order
	// siteOf and hostOf map each host to its site name (provider.Sited):
	// the native runtime runs one gateway per host, since its instances
	// bind to their own host's loopback.
	siteOf map[string]string
	hostOf map[string]string
	pool   *pool
	logger *slog.Logger

	// gatewayBinary is Options.Binary when the caller chose it, for the
	// docker runtime's gateway image; empty lets the docker provider use
	// (and check) this executable.
	gatewayBinary string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// sums caches local files' sha256 by path, size and mtime: hashing the
	// bpm binary on every deploy would cost more than the upload check.
	sums map[string]fileSum
	// placing maps an instance being deployed to the host placement chose,
	// until its deploy returns: placement counts it there before the host
	// can show it, so concurrent deploys spread and respect the cap.
	placing map[string]string
	// placed logs placements (numbered by placeSeq) that a placement
	// still waiting for the hosts' answers may not see in them: each
	// counts those made after its round of queries began. queries counts
	// the placements waiting on a round begun at each number, so the log
	// keeps only what one of them needs.
	placeSeq uint64
	placed   []placement
	queries  map[uint64]int
	// query is the round of host queries placements in progress share.
	query *loadQuery
	// engines are the docker runtime's per-host Docker providers, each
	// reaching its host's engine socket through that host's connection.
	engines map[string]*docker.Provider
	// reserved holds the placements Place made for deploys to come, by
	// instance id, until Deploy takes them (or they expire).
	reserved map[string]reservation
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Logser   = (*Provider)(nil)
	_ provider.Lister   = (*Provider)(nil)
	_ provider.Closer   = (*Provider)(nil)
)

// New builds a provider for cfg; it connects lazily, on first use of a host.
func New(cfg *Config, opts Options) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ssh: config: %w", err)
	}
	if cfg.Runtime.Type == RuntimeDocker && !validID.MatchString(opts.Remote) {
		return nil, fmt.Errorf("ssh: runtime docker: remote name %q (Options.Remote) is required and must be one word: it labels every container", opts.Remote)
	}
	var hosts []string
	for _, h := range cfg.Hosts {
		a, err := hostAddr(h, cfg.Port)
		if err != nil {
			return nil, err // Validate caught it already
		}
		hosts = append(hosts, a)
	}
	gatewayBinary := opts.Binary
	if opts.Binary == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("ssh: find own executable to upload: %w", err)
		}
		opts.Binary = self
	}
	if opts.BinaryPlatform == (Platform{}) {
		opts.BinaryPlatform = hostPlatform()
	}
	if opts.BaseDir == "" {
		opts.BaseDir = ".bpm"
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = supervisor.DefaultGracePeriod
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Executable == nil {
		opts.Executable = func(context.Context, *blueprint.Package, Platform) (string, []string, error) {
			return "", nil, errors.New("no executable resolver configured (ssh.Options.Executable)")
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = defaultKeepAlive
	}
	logger := opts.Logger.With("provider", Type)
	sc, err := loadSSHConfig(cfg.SSHConfig)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	pool := newPool(cfg, logger, opts.DialTimeout, opts.KeepAlive)
	pool.sshConfig = sc
	for i, h := range cfg.Hosts {
		pool.entries[hosts[i]] = h
	}
	siteOf, hostOf := map[string]string{}, map[string]string{}
	for _, a := range hosts {
		s := siteName(a)
		if other, dup := hostOf[s]; dup {
			return nil, fmt.Errorf("ssh: hosts %s and %s have the same site name %q: list one of them by another spelling", other, a, s)
		}
		siteOf[a], hostOf[s] = s, a
	}
	return &Provider{
		cfg: cfg, opts: opts, hosts: hosts, logger: logger,
		siteOf: siteOf, hostOf: hostOf,
		reserved:      map[string]reservation{},
		gatewayBinary: gatewayBinary,
		pool:          pool,
		locks:         map[string]*sync.Mutex{},
		sums:          map[string]fileSum{},
		placing:       map[string]string{},
		queries:       map[uint64]int{},
		engines:       map[string]*docker.Provider{},
	}, nil
}

// Type implements provider.Provider.
func (p *Provider) Type() string { return Type }

// Close drops every host connection. Instances keep running: their
// supervisors do not depend on the connection.
func (p *Provider) Close() error {
	p.mu.Lock()
	for _, e := range p.engines {
		_ = e.Close()
	}
	p.mu.Unlock()
	return p.pool.closeAll()
}

// dockerRuntime reports whether instances run as containers.
func (p *Provider) dockerRuntime() bool { return p.cfg.Runtime.Type == RuntimeDocker }

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

// handle is what Deploy returns: the host is the part that matters, since
// without it every host must be searched.
type handle struct {
	Host            string `json:"host"`
	Dir             string `json:"dir,omitempty"`
	SupervisorPID   int    `json:"supervisor_pid,omitempty"`
	SupervisorStart uint64 `json:"supervisor_start,omitempty"`
	// Docker is the docker provider's own handle, for the docker runtime.
	Docker json.RawMessage `json:"docker,omitempty"`
}

func (h handle) encode() provider.Handle {
	b, _ := json.Marshal(h)
	return b
}

func decodeHandle(b provider.Handle) (handle, error) {
	var h handle
	if len(b) == 0 {
		return h, nil
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("decode handle: %w", err)
	}
	return h, nil
}

// validID keeps an instance id one safe path element on the host.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid instance id %q", id)
	}
	return nil
}

// Resources sums what the reachable hosts report. An unreachable host adds
// nothing and is logged.
func (p *Provider) Resources(ctx context.Context) (provider.Resources, error) {
	var r provider.Resources
	var errs []error
	total := 0
	for _, l := range p.hostLoads(ctx) {
		if l.err != nil {
			p.logger.Warn("host unreachable; skipped", "host", l.addr, "err", l.err)
			errs = append(errs, l.err)
			continue
		}
		r.CPUMillis += l.res.CPUMillis
		r.MemoryBytes += l.res.MemoryBytes
		total += len(l.ids)
	}
	if len(errs) == len(p.hosts) {
		return r, fmt.Errorf("ssh: resources: no host reachable: %w", errors.Join(errs...))
	}
	r.Instances = -1
	if p.cfg.MaxInstances > 0 {
		r.Instances = max(p.cfg.MaxInstances-total, 0)
	}
	return r, nil
}

// hostLoadResult is one host's answer to hostLoad.
type hostLoadResult struct {
	addr string
	res  provider.Resources
	ids  []string
	err  error
}

// hostLoads asks every host for its load at once, answers in config order.
// Placement is serialised, so a deploy waits for the placements before it:
// asking the hosts one after another made each wait for the sum of every
// host's answer (and three deploys at once for three times that), instead
// of for the slowest host, and an unreachable host's dial timeout now runs
// beside the others rather than before them.
func (p *Provider) hostLoads(ctx context.Context) []hostLoadResult {
	out := make([]hostLoadResult, len(p.hosts))
	var wg sync.WaitGroup
	for i, a := range p.hosts {
		wg.Go(func() {
			r, ids, err := p.hostLoad(ctx, a)
			out[i] = hostLoadResult{addr: a, res: r, ids: ids, err: err}
		})
	}
	wg.Wait()
	return out
}

// hostLoad reports one host's CPUs and memory and the ids of the bpm
// instances on it, for the runtime in use.
func (p *Provider) hostLoad(ctx context.Context, addr string) (provider.Resources, []string, error) {
	if p.dockerRuntime() {
		return p.engineLoad(ctx, addr)
	}
	return p.hostResources(ctx, addr)
}

// hostResources reports one host's CPUs, available memory and the bpm
// instances that run there.
func (p *Provider) hostResources(ctx context.Context, addr string) (provider.Resources, []string, error) {
	c, err := p.pool.get(ctx, addr)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	cpus, err := c.cpuCount(ctx)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	mi, err := c.readFile("/proc/meminfo", 1<<16)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	mem := memAvailable(string(mi))
	// Placement needs who is there, not how each is doing: no state.
	owned, err := p.listHost(ctx, c, false)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	return provider.Resources{CPUMillis: int64(cpus) * 1000, MemoryBytes: mem}, ownedIDs(owned), nil
}

func ownedIDs(owned []provider.Owned) []string {
	ids := make([]string, len(owned))
	for i, o := range owned {
		ids[i] = o.InstanceID
	}
	return ids
}

func memAvailable(meminfo string) int64 {
	for line := range strings.SplitSeq(meminfo, "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if !ok || k != "MemAvailable" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 0 {
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// EstimateCost prices an instance from the remote's [pricing] table; hosts
// the operator owns default to free.
func (p *Provider) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{HourlyUSD: 0, Detail: "own hosts over ssh (set [pricing] to attribute their cost)"}, nil
}
