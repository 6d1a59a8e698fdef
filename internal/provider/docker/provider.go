package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/crashpoint"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
)

// Ownership labels: every object bpm creates on an engine carries them, so
// ListOwned and reconcile find it again without any side file.
const (
	labelInstance  = "bpm.instance"
	labelRemote    = "bpm.remote"
	labelBlueprint = "bpm.blueprint"
	labelService   = "bpm.service"
	labelRole      = "bpm.role"   // "instance" or "gateway"
	labelPort      = "bpm.port"   // the first tcp port: the instance address's port
	labelHealth    = "bpm.health" // the manifest's health check (health.Spec JSON, host left out)
)

// stopGrace is how long an instance gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// Options configure a Provider beyond its [remote] section.
type Options struct {
	// Getenv reads DOCKER_HOST and friends; default os.Getenv.
	Getenv func(string) string
	// Progress receives image load and pull progress; default os.Stderr
	// (progress is a notice, never a result).
	Progress io.Writer
	// GatewayBinary is the static bpm binary whose image the gateway runs;
	// default this executable (see EstablishTunnel).
	GatewayBinary string
	// Dial, when set, replaces the endpoint's own transport: every
	// request goes over a connection it returns (plain HTTP, as over a unix
	// socket). The SSH provider's docker runtime reaches a host's engine
	// socket this way through its SSH connection. The remote's endpoint and
	// TLS settings are then ignored.
	Dial func(ctx context.Context) (net.Conn, error)
	// Check runs an instance's health check; default health.Check, from
	// this process. Through a gateway (provider.Env.RemoteCheck) it runs
	// inside the remote, where container addresses route.
	Check  CheckFunc
	Logger *slog.Logger
}

// Provider runs instances as containers on one Docker engine.
type Provider struct {
	remote string
	cfg    *Config
	ep     endpoint
	cli    *client
	opts   Options
	logger *slog.Logger

	gwImage gatewayImage

	// lifecycle serialises the steps that must see a consistent engine:
	// the quota check with the create it admits, and the removal of the
	// shared network and gateway with the last instance's termination.
	lifecycle sync.Mutex
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Logser   = (*Provider)(nil)
	_ provider.Lister   = (*Provider)(nil)
	_ provider.Closer   = (*Provider)(nil)
)

// Info registers the provider type.
func Info() provider.Info {
	return provider.Info{
		Type:        Type,
		Remote:      true,
		Description: "containers on a Docker Engine or Docker-compatible API",
		NewConfig:   func() any { return NewConfig() },
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			c, ok := env.Config.(*Config)
			if !ok || c == nil {
				return nil, fmt.Errorf("docker: remote %s: config is %T, want *docker.Config", env.Remote, env.Config)
			}
			opts := Options{Logger: env.Logger}
			if env.RemoteCheck != nil {
				opts.Check = func(ctx context.Context, spec health.Spec) error { return env.RemoteCheck(ctx, "", spec) }
			}
			if c.Regions.Primary != "" {
				return newRegionalProvider(env.Remote, c, opts, env.RemoteCheck)
			}
			return New(env.Remote, c, opts)
		},
	}
}

// New builds a provider for remote. It reads the TLS files now, so a wrong
// path fails at once, but does not contact the engine: a remote that is down
// must not stop bpm from starting.
func New(remote string, c *Config, opts Options) (*Provider, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	logger := opts.Logger.With("remote", remote)
	ep := c.Endpoint
	if r := c.Regions; r.Primary != "" && r.Endpoints[r.Primary] != "" {
		ep = r.Endpoints[r.Primary]
	}
	e, err := resolveEndpoint(c, ep, opts.Getenv)
	if err != nil {
		return nil, fmt.Errorf("docker: remote %s: %w", remote, err)
	}
	if opts.Dial != nil {
		e = endpoint{URL: "dial://" + remote, dial: opts.Dial}
	}
	cli, err := newClient(e, func(msg string, args ...any) { logger.Warn(msg, args...) })
	if err != nil {
		return nil, fmt.Errorf("docker: remote %s: %w", remote, err)
	}
	return &Provider{remote: remote, cfg: c, ep: e, cli: cli, opts: opts, logger: logger}, nil
}

// Type returns "docker".
func (p *Provider) Type() string { return Type }

// Close drops idle connections to the engine.
func (p *Provider) Close() error {
	p.cli.hc.CloseIdleConnections()
	return nil
}

// Ping checks that the engine answers and accepts bpm's credentials.
func (p *Provider) Ping(ctx context.Context) error {
	_, err := p.cli.negotiate(ctx)
	return p.wrap("ping", err)
}

// warnInsecure repeats the plain-TCP warning on every use, as the issue
// asks: an operator must not forget the engine is reachable in clear text.
func (p *Provider) warnInsecure() {
	// A unix socket is guarded by its file mode, and a caller's own
	// transport (Options.Dial, the ssh provider's SSH channel) by itself.
	if strings.HasPrefix(p.cli.base, "http://") && !strings.HasPrefix(p.ep.URL, "unix://") && p.ep.dial == nil {
		p.logger.Warn("docker endpoint without TLS", "endpoint", redactURL(p.ep.URL))
	}
}

func (p *Provider) wrap(step string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("docker: %s: %w", step, explain(p.ep, err))
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// networkName is the remote's private network, shared by its instances and
// its gateway.
func (p *Provider) networkName() string { return "bpm-" + nameUnsafe.ReplaceAllString(p.remote, "-") }

// gatewayName is the remote's one gateway container on this engine.
// bridgeVolumeName is the named volume the remote's gateway serves instance
// bridge sockets in; every instance mounts it at gateway.BridgeDir.
func (p *Provider) bridgeVolumeName() string { return p.networkName() + "-bridge" }

// bridgeMount mounts the remote's bridge volume where the gateway serves
// the sockets, in the gateway's container and in each instance's.
func (p *Provider) bridgeMount() mount {
	return mount{Type: "volume", Source: p.bridgeVolumeName(), Target: gateway.BridgeDir}
}

// BridgeSocketPath is where instance (blueprintID, serviceID) dials its
// bridge inside its container: a socket the remote's gateway serves in the
// shared bridge volume, with the Blueprint SDK's file layout. The gateway
// runs as nobody and its directories are 0700, as a local bridge socket's:
// instance containers reach them as root (the Docker default); an image
// that runs as another user gets no bridge.
func (p *Provider) BridgeSocketPath(blueprintID, serviceID uint64) string {
	return bridge.SocketPath(gateway.BridgeDir, blueprintID, serviceID)
}

func (p *Provider) gatewayName() string {
	return "bpm-gateway-" + nameUnsafe.ReplaceAllString(p.remote, "-")
}

// handle is what Deploy returns and the manager stores. The container name
// is derived from the instance id alone, so a nil handle works too.
type handle struct {
	Container string `json:"container"` // the id at creation, for humans
	Name      string `json:"name"`
}

func containerName(instanceID string) string { return instanceID }

var instanceIDRE = regexp.MustCompile(`^bp-[a-z0-9]{1,40}$`)

func (p *Provider) nameOf(ref provider.Ref) (string, error) {
	if !instanceIDRE.MatchString(ref.InstanceID) {
		return "", fmt.Errorf("instance id %q is not bp-<lowercase letters and digits>", ref.InstanceID)
	}
	return containerName(ref.InstanceID), nil
}

func encodeHandle(id, name string) provider.Handle {
	b, _ := json.Marshal(handle{Container: id, Name: name})
	return b
}

// Accepts refuses a package the engine cannot run: one without a container
// source, or one asking for a VM boundary (refused, not run with less than
// asked: bpm does not pick the engine's container runtime, so every
// container shares its kernel).
func (p *Provider) Accepts(pkg *blueprint.Package) error {
	if _, err := containerSource(pkg); err != nil {
		return err
	}
	if m := pkg.Manifest; m.WantsVM() {
		return fmt.Errorf("the manifest's isolation = %q cannot be given on a docker remote (its containers share the engine's kernel): %w",
			m.Isolation, provider.ErrUnsupported)
	}
	return nil
}

// containerSource picks the manifest's first container source.
func containerSource(pkg *blueprint.Package) (blueprint.Source, error) {
	for _, s := range pkg.Manifest.Sources {
		if s.Kind == blueprint.SourceContainer && s.Image != "" {
			return s, nil
		}
	}
	return blueprint.Source{}, fmt.Errorf("blueprint %s has no container source: %w", pkg.Manifest.Name, provider.ErrUnsupported)
}

// limits combines the manifest's request with the remote's caps: the
// smaller wins, and a cap applies even when the manifest asks for nothing.
func (p *Provider) limits(m blueprint.Manifest) (nanoCPUs, memory int64, err error) {
	if m.Resources.CPU != "" {
		milli, err := blueprint.ParseCPU(m.Resources.CPU)
		if err != nil {
			return 0, 0, err
		}
		nanoCPUs = milli * 1_000_000
	}
	if m.Resources.Memory != "" {
		if memory, err = blueprint.ParseBytes(m.Resources.Memory); err != nil {
			return 0, 0, err
		}
	}
	if s := p.cfg.Resources.CPULimit; s != "" {
		q, err := config.ParseQuantity(s)
		if err != nil {
			return 0, 0, fmt.Errorf("resources.cpu_limit: %w", err)
		}
		if lim := int64(q.Value * 1e9); nanoCPUs == 0 || lim < nanoCPUs {
			nanoCPUs = lim
		}
	}
	if s := p.cfg.Resources.MemoryLimit; s != "" {
		q, err := config.ParseQuantity(s)
		if err != nil {
			return 0, 0, fmt.Errorf("resources.memory_limit: %w", err)
		}
		if lim := int64(q.Value); memory == 0 || lim < memory {
			memory = lim
		}
	}
	return nanoCPUs, memory, nil
}

// maxInstances is the tighter of max_instances and resources.max_instances;
// 0 means no cap.
func (p *Provider) maxInstances() int { return maxInstances(p.cfg) }

// maxInstances is the smaller of c's two caps that are set; 0 when none is.
func maxInstances(c *Config) int {
	a, b := c.MaxInstances, c.Resources.MaxInstances
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// Deploy creates and starts the instance's container on the remote's
// private network, with no published ports. A retried deploy finds the
// container by its name and only starts it.
func (p *Provider) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	p.warnInsecure()
	name, err := p.nameOf(provider.Ref{InstanceID: req.InstanceID})
	if err != nil {
		return nil, fmt.Errorf("docker: deploy: %w", err)
	}
	if req.Package == nil {
		return nil, fmt.Errorf("docker: deploy %s: no package", name)
	}
	if err := p.Accepts(req.Package); err != nil {
		return nil, fmt.Errorf("docker: deploy %s: %w", name, err)
	}
	src, _ := containerSource(req.Package)
	m := req.Package.Manifest
	nano, mem, err := p.limits(m)
	if err != nil {
		return nil, fmt.Errorf("docker: deploy %s: %w", name, err)
	}

	// Already there (a retry after a crash or a lost answer): start it.
	if c, err := p.cli.containerInspect(ctx, name); err == nil {
		if c.Config.Labels[labelInstance] != req.InstanceID || c.Config.Labels[labelRemote] != p.remote {
			return nil, fmt.Errorf("docker: deploy %s: a container of that name exists and this remote does not own it: %w", name, provider.ErrExists)
		}
		if err := p.cli.containerStart(ctx, name); err != nil {
			return nil, p.wrap("start "+name, err)
		}
		return encodeHandle(c.ID, name), nil
	} else if !isStatus(err, http.StatusNotFound) {
		return nil, p.wrap("inspect "+name, err)
	}

	pkgArchive := ""
	if src.Archive != "" {
		pkgArchive = filepath.Join(req.Package.Dir, src.Archive)
	}
	if err := p.ensureImage(ctx, src.Image, pkgArchive); err != nil {
		return nil, fmt.Errorf("docker: deploy %s: %w", name, err)
	}

	labels := p.labels("instance")
	labels[labelInstance] = req.InstanceID
	labels[labelBlueprint] = strconv.FormatUint(req.BlueprintID, 10)
	labels[labelService] = strconv.FormatUint(req.ServiceID, 10)
	if port := health.FirstTCPPort(m.Ports); port > 0 {
		labels[labelPort] = strconv.Itoa(port)
	}
	if spec, ok, err := health.FromManifest(m, "0.0.0.0"); err != nil {
		return nil, fmt.Errorf("docker: deploy %s: %w", name, err)
	} else if ok {
		b, _ := json.Marshal(spec)
		labels[labelHealth] = string(b)
	}
	cfg := containerConfig{
		Image:  src.Image,
		Cmd:    src.Args,
		Env:    envList(req.Env),
		Labels: labels,
		HostConfig: hostConfig{
			NetworkMode: p.networkName(),
			// unless-stopped: the engine restarts a crashed service and
			// brings it back after a host reboot, but a container bpm
			// stopped stays stopped.
			RestartPolicy: restartPolicy{Name: "unless-stopped"},
			NanoCPUs:      nano,
			Memory:        mem,
			Mounts:        []mount{p.bridgeMount()},
		},
	}

	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if limit := p.maxInstances(); limit > 0 {
		owned, err := p.ListOwned(ctx)
		if err != nil {
			return nil, fmt.Errorf("docker: deploy %s: count instances: %w", name, err)
		}
		if n := len(owned) - count(owned, req.InstanceID); n >= limit {
			return nil, fmt.Errorf("docker: deploy %s: remote %s runs %d of max_instances %d: %w", name, p.remote, n, limit, provider.ErrQuota)
		}
	}
	if err := p.ensureNetwork(ctx); err != nil {
		return nil, err
	}
	id, err := p.cli.containerCreate(ctx, name, cfg)
	if isStatus(err, http.StatusConflict) {
		// A concurrent deploy of the same instance won the race.
		c, ierr := p.cli.containerInspect(ctx, name)
		if ierr != nil {
			return nil, p.wrap("inspect "+name, ierr)
		}
		id, err = c.ID, nil
	}
	if err != nil {
		return nil, p.wrap("create "+name, err)
	}
	crashpoint.Hit("docker/after-create")
	if err := p.cli.containerStart(ctx, name); err != nil {
		// Leave nothing half made: a container that cannot start would
		// otherwise be adopted by reconcile as a failed instance forever.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := p.cli.containerRemove(rctx, name); rerr != nil && !isStatus(rerr, http.StatusNotFound) {
			p.logger.Warn("remove a container that failed to start", "instance", req.InstanceID, "err", rerr)
		}
		return nil, p.wrap("start "+name, err)
	}
	crashpoint.Hit("docker/after-start")
	p.logger.Info("container started", "instance", req.InstanceID, "image", src.Image)
	return encodeHandle(id, name), nil
}

func count(owned []provider.Owned, id string) int {
	n := 0
	for _, o := range owned {
		if o.InstanceID == id {
			n++
		}
	}
	return n
}

// labels are the ownership labels every object of this remote carries.
func (p *Provider) labels(role string) map[string]string {
	return map[string]string{labelRemote: p.remote, labelRole: role}
}

// envList turns env into the engine's KEY=value list, sorted so the same
// request always creates the same container config. The values are never
// logged.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// ensureImage makes ref present on the engine: already there, else loaded
// from the archive the operator configured for it, else from the one the
// package ships (pkgArchive, "" for none), else pulled.
func (p *Provider) ensureImage(ctx context.Context, ref, pkgArchive string) error {
	ok, err := p.cli.imageExists(ctx, ref)
	if err != nil {
		return p.wrap("inspect image "+ref, err)
	}
	if ok {
		return nil
	}
	if path := p.cfg.ImageArchives[ref]; path != "" {
		return p.loadArchive(ctx, ref, path)
	}
	if pkgArchive != "" {
		return p.loadArchive(ctx, ref, pkgArchive)
	}
	fmt.Fprintf(p.opts.Progress, "docker: pulling %s on remote %s\n", ref, p.remote)
	if err := p.cli.imagePull(ctx, ref, p.opts.Progress); err != nil {
		return fmt.Errorf("image %s is not on the engine and pulling it failed (for an engine without registry access, set image_archives): %w", ref, explain(p.ep, err))
	}
	return nil
}

func (p *Provider) loadArchive(ctx context.Context, ref, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("image archive for %s: %w", ref, err)
	}
	defer f.Close()
	fmt.Fprintf(p.opts.Progress, "docker: loading %s from %s on remote %s\n", ref, path, p.remote)
	if err := p.cli.imageLoad(ctx, f, p.opts.Progress); err != nil {
		return p.wrap("load "+path, err)
	}
	ok, err := p.cli.imageExists(ctx, ref)
	if err != nil {
		return p.wrap("inspect image "+ref, err)
	}
	if !ok {
		return fmt.Errorf("archive %s loaded but holds no image %s", path, ref)
	}
	return nil
}

// ensureNetwork creates the remote's private bridge network and its bridge
// volume if missing. Callers hold p.lifecycle.
func (p *Provider) ensureNetwork(ctx context.Context) error {
	// Creating an existing volume is a no-op that returns it.
	if err := p.cli.volumeCreate(ctx, p.bridgeVolumeName(), p.labels("bridge")); err != nil {
		return p.wrap("create volume "+p.bridgeVolumeName(), err)
	}
	name := p.networkName()
	_, err := p.cli.networkInspect(ctx, name)
	if err == nil {
		return nil
	}
	if !isStatus(err, http.StatusNotFound) {
		return p.wrap("inspect network "+name, err)
	}
	labels := p.labels("network")
	if err := p.cli.networkCreate(ctx, name, labels); err != nil && !isStatus(err, http.StatusConflict) {
		return p.wrap("create network "+name, err)
	}
	return nil
}

// Status maps the container's state to bpm's and, for a running container
// with a health check, probes it at the container's address on the
// remote's network (from the manager's host when it reaches that network,
// as in tests; otherwise the manager asks the gateway).
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	check := p.opts.Check
	if check == nil {
		check = health.Check
	}
	return p.StatusWith(ctx, ref, check)
}

func mapState(c containerJSON) (provider.State, string) {
	s := c.State
	switch s.Status {
	case "created":
		return provider.StateCreating, "created"
	case "running":
		return provider.StateRunning, ""
	case "restarting":
		return provider.StateDegraded, fmt.Sprintf("restarting (restart %d) after exit code %d", c.RestartCount, s.ExitCode)
	case "paused":
		return provider.StateDegraded, "paused"
	case "removing":
		return provider.StateTerminating, "removing"
	case "exited", "dead":
		msg := fmt.Sprintf("container %s with exit code %d", s.Status, s.ExitCode)
		if s.Error != "" {
			msg += ": " + s.Error
		}
		return provider.StateFailed, msg
	}
	return provider.StateFailed, "unknown container state " + s.Status
}

// address is the container's IP on the remote's network plus the first tcp
// port, or its IP alone when the manifest declares no port.
func (p *Provider) address(c containerJSON) string {
	ip := ""
	if n, ok := c.NetworkSettings.Networks[p.networkName()]; ok {
		ip = n.IPAddress
	}
	if ip == "" {
		return ""
	}
	if port := c.Config.Labels[labelPort]; port != "" {
		return net.JoinHostPort(ip, port)
	}
	return ip
}

func healthSpec(c containerJSON) (health.Spec, bool) {
	raw := c.Config.Labels[labelHealth]
	if raw == "" {
		return health.Spec{}, false
	}
	var spec health.Spec
	if json.Unmarshal([]byte(raw), &spec) != nil {
		return health.Spec{}, false
	}
	return spec, true
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// Terminate stops and removes the container; already gone is success. The
// remote's last instance takes the gateway and the network with it.
func (p *Provider) Terminate(ctx context.Context, ref provider.Ref) error {
	p.warnInsecure()
	name, err := p.nameOf(ref)
	if err != nil {
		return fmt.Errorf("docker: terminate: %w", err)
	}
	c, err := p.cli.containerInspect(ctx, name)
	switch {
	case isStatus(err, http.StatusNotFound):
	case err != nil:
		return p.wrap("inspect "+name, err)
	case c.Config.Labels[labelInstance] != ref.InstanceID:
		return fmt.Errorf("docker: terminate %s: the container of that name is not bpm's; left alone", name)
	default:
		// Stop first so the service gets SIGTERM and its grace period;
		// a forced remove alone would SIGKILL it.
		if err := p.cli.containerStop(ctx, name, int(stopGrace/time.Second)); err != nil && !isStatus(err, http.StatusNotFound) {
			return p.wrap("stop "+name, err)
		}
		if err := p.cli.containerRemove(ctx, name); err != nil && !isStatus(err, http.StatusNotFound, http.StatusConflict) {
			return p.wrap("remove "+name, err)
		}
		p.logger.Info("container removed", "instance", ref.InstanceID)
	}
	return p.cleanupIfLast(ctx)
}

// cleanupIfLast removes the gateway and the network once no instance of the
// remote is left on the engine.
func (p *Provider) cleanupIfLast(ctx context.Context) error {
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	owned, err := p.ListOwned(ctx)
	if err != nil {
		return fmt.Errorf("docker: count instances: %w", err)
	}
	if len(owned) > 0 {
		return nil
	}
	gw := p.gatewayName()
	if err := p.cli.containerRemove(ctx, gw); err != nil && !isStatus(err, http.StatusNotFound, http.StatusConflict) {
		return p.wrap("remove gateway "+gw, err)
	}
	nw := p.networkName()
	if err := p.cli.networkRemove(ctx, nw); err != nil && !isStatus(err, http.StatusNotFound) {
		// Something else (not bpm's) still uses it: harmless, say so.
		p.logger.Warn("network left in place", "network", nw, "err", err)
	}
	vol := p.bridgeVolumeName()
	if err := p.cli.volumeRemove(ctx, vol); err != nil && !isStatus(err, http.StatusNotFound) {
		p.logger.Warn("bridge volume left in place", "volume", vol, "err", err)
	}
	return nil
}

// ListOwned lists the remote's instance containers by their labels.
func (p *Provider) ListOwned(ctx context.Context) ([]provider.Owned, error) {
	list, err := p.cli.containerList(ctx, labelRemote+"="+p.remote, labelRole+"=instance")
	if err != nil {
		return nil, p.wrap("list containers", err)
	}
	var out []provider.Owned
	for _, c := range list {
		id := c.Labels[labelInstance]
		if !instanceIDRE.MatchString(id) {
			continue
		}
		var cj containerJSON
		cj.State.Status = c.State
		state, _ := mapState(cj)
		out = append(out, provider.Owned{InstanceID: id, Handle: encodeHandle(c.ID, containerName(id)), State: state})
	}
	return out, nil
}

// Logs streams the container's stdout and stderr; Follow waits for more
// until ctx ends.
func (p *Provider) Logs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	name, err := p.nameOf(ref)
	if err != nil {
		return fmt.Errorf("docker: logs: %w", err)
	}
	err = p.cli.containerLogs(ctx, name, opts.Follow, opts.Tail, w)
	if isStatus(err, http.StatusNotFound) {
		return fmt.Errorf("docker: logs %s: %w", name, provider.ErrNotFound)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return p.wrap("logs "+name, err)
}

// Resources reports the engine's CPUs and memory and the instances
// max_instances still allows.
func (p *Provider) Resources(ctx context.Context) (provider.Resources, error) {
	info, err := p.cli.info(ctx)
	if err != nil {
		return provider.Resources{}, p.wrap("info", err)
	}
	r := provider.Resources{CPUMillis: int64(info.NCPU) * 1000, MemoryBytes: info.MemTotal, Instances: -1}
	if limit := p.maxInstances(); limit > 0 {
		owned, err := p.ListOwned(ctx)
		if err != nil {
			return provider.Resources{}, err
		}
		r.Instances = max(0, limit-len(owned))
	}
	return r, nil
}

// EstimateCost: an engine bpm does not rent has no price of its own; the
// cost package applies the remote's [pricing] table on top.
func (p *Provider) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{HourlyUSD: 0, Detail: "docker engine " + p.ep.URL + ": priced by the remote's [pricing] table"}, nil
}
