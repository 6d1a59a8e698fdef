package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/crashpoint"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// meta is instance.json on the host: what Status needs, never a secret.
type meta struct {
	InstanceID  string              `json:"instance_id"`
	Remote      string              `json:"remote,omitempty"`
	Host        string              `json:"host"`
	BlueprintID uint64              `json:"blueprint_id"`
	ServiceID   uint64              `json:"service_id"`
	Address     string              `json:"address,omitempty"`
	Health      *health.Spec        `json:"health,omitempty"`
	GracePeriod supervisor.Duration `json:"grace_period"`
	Created     time.Time           `json:"created"`
}

const metaFile = "instance.json"

func (p *Provider) instancesDir(c *hostConn) string { return path.Join(p.base(c), "instances") }

// readMeta reads an instance's meta. An instance belongs to the host whose
// address it recorded: several hosts may share one home directory (NFS,
// or the test environment's network namespaces), and each must see only
// its own instances.
func (p *Provider) readMeta(c *hostConn, dir string) (meta, error) {
	var m meta
	b, err := c.readFile(path.Join(dir, metaFile), 1<<20)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", metaFile, err)
	}
	return m, nil
}

// Deploy places the instance on a host, uploads what it needs and starts
// its supervisor there. A deploy of an instance that already runs returns
// its handle.
func (p *Provider) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	if err := checkID(req.InstanceID); err != nil {
		return nil, fmt.Errorf("ssh: deploy: %w", err)
	}
	if req.Package != nil {
		// Refused before a host is chosen, not run with less than asked.
		if err := p.Accepts(req.Package); err != nil {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
	}
	unlock := p.lock(req.InstanceID)
	defer unlock()
	if p.dockerRuntime() {
		return p.deployContainer(ctx, req)
	}
	if c, dir, _, err := p.find(ctx, provider.Ref{InstanceID: req.InstanceID}); err == nil {
		if pid, start, alive := p.supervisorOf(c, dir, handle{}); alive {
			return handle{Host: c.addr, Dir: dir, SupervisorPID: pid, SupervisorStart: start}.encode(), nil
		}
		// Its supervisor is dead: start it again where its files are.
		h, err := p.deployOn(ctx, c, req)
		if err != nil {
			return nil, fmt.Errorf("ssh: deploy %s on %s: %w", req.InstanceID, c.addr, c.lost(err))
		}
		return h, nil
	}
	if req.Package == nil {
		return nil, fmt.Errorf("ssh: deploy %s: no package", req.InstanceID)
	}
	var addr string
	if req.Site != "" {
		// Placed already (Place): the site's host, whose gateway the
		// manager has just established.
		var ok bool
		if addr, ok = p.hostOf[req.Site]; !ok {
			return nil, fmt.Errorf("ssh: deploy %s: site %q is none of the remote's hosts", req.InstanceID, req.Site)
		}
		if r, ok := p.takeReservation(req.InstanceID); ok {
			defer r.release()
		}
	} else {
		a, release, err := p.place(ctx, req.InstanceID)
		if err != nil {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
		defer release()
		addr = a
	}
	c, err := p.pool.get(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
	}
	h, err := p.deployOn(ctx, c, req)
	if err != nil {
		return nil, fmt.Errorf("ssh: deploy %s on %s: %w", req.InstanceID, c.addr, c.lost(err))
	}
	return h, nil
}

// placement is one placement decision, numbered.
type placement struct {
	seq      uint64
	id, host string
}

// place picks the host for a new instance: the reachable host with the
// fewest bpm instances per CPU, counting those still being deployed there.
// Unreachable hosts are skipped with a warning; max_instances caps the
// total. The host stays reserved for instanceID until release is called,
// which the caller does once its deploy has returned.
//
// Placements started together share one round of host queries, and only
// their decisions are serialised: asking under one lock made N deploys
// started together wait for N rounds, one after another, and N rounds at
// once compete for the same connections. What the hosts' answers cannot
// show is counted from memory instead: the deploys in flight when the
// asking began (one may finish, and leave placing, before its host lists
// it) and every placement decided since it began. A shared answer is no
// staler than one's own: both began before the decision.
func (p *Provider) place(ctx context.Context, instanceID string) (addr string, release func(), err error) {
	q := p.joinQuery()
	select {
	case <-q.done:
	case <-ctx.Done():
		p.mu.Lock()
		p.endQuery(q.since)
		p.mu.Unlock()
		return "", nil, ctx.Err()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.endQuery(q.since)
	counted := maps.Clone(q.inFlight)
	for _, e := range p.placed {
		if e.seq > q.since {
			counted[e.id] = e.host
		}
	}
	loads := q.loads
	best, bestLoad := "", 0.0
	all := map[string]bool{}
	var errs []error
	for _, l := range loads {
		a, r := l.addr, l.res
		if l.err != nil {
			p.logger.Warn("host unreachable; not placing there", "host", a, "err", l.err)
			errs = append(errs, l.err)
			continue
		}
		on := map[string]bool{}
		for _, id := range l.ids {
			on[id] = true
		}
		for id, h := range counted {
			if h == a {
				on[id] = true
			}
		}
		for id := range on {
			all[id] = true
		}
		load := float64(len(on)) / float64(max(r.CPUMillis, 1))
		if best == "" || load < bestLoad {
			best, bestLoad = a, load
		}
	}
	if best == "" {
		return "", nil, fmt.Errorf("no host reachable: %w: %w", provider.ErrUnavailable, errors.Join(errs...))
	}
	if p.cfg.MaxInstances > 0 && len(all) >= p.cfg.MaxInstances {
		return "", nil, fmt.Errorf("max_instances %d reached: %w", p.cfg.MaxInstances, provider.ErrQuota)
	}
	p.placeSeq++
	p.placed = append(p.placed, placement{seq: p.placeSeq, id: instanceID, host: best})
	p.placing[instanceID] = best
	return best, func() {
		p.mu.Lock()
		delete(p.placing, instanceID)
		p.mu.Unlock()
	}, nil
}

// loadQuery is one round of host queries, shared by the placements that
// start while it runs.
type loadQuery struct {
	done     chan struct{} // closed when loads is set
	since    uint64        // placeSeq when it began
	inFlight map[string]string
	loads    []hostLoadResult
}

// joinQuery returns the round of host queries in progress, or starts one.
// The round runs without the caller's context, so one caller giving up
// does not fail the others; each host's query is bounded by the dial
// timeout and the keepalive. The caller must end it with endQuery.
func (p *Provider) joinQuery() *loadQuery {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.query
	if q == nil {
		q = &loadQuery{done: make(chan struct{}), since: p.placeSeq, inFlight: maps.Clone(p.placing)}
		p.query = q
		go func() {
			loads := p.hostLoads(context.Background())
			p.mu.Lock()
			q.loads = loads
			if p.query == q {
				p.query = nil
			}
			p.mu.Unlock()
			close(q.done)
		}()
	}
	p.queries[q.since]++
	return q
}

// endQuery ends a placement's asking that began at since, and drops the
// placements no placement still asking can need. p.mu is held.
func (p *Provider) endQuery(since uint64) {
	if p.queries[since]--; p.queries[since] <= 0 {
		delete(p.queries, since)
	}
	if len(p.queries) == 0 {
		p.placed = p.placed[:0]
		return
	}
	oldest := slices.Min(slices.Collect(maps.Keys(p.queries)))
	p.placed = slices.DeleteFunc(p.placed, func(e placement) bool { return e.seq <= oldest })
}

func (p *Provider) deployOn(ctx context.Context, c *hostConn, req provider.DeployRequest) (provider.Handle, error) {
	log := p.logger.With("instance", req.InstanceID, "host", c.addr)
	pl, err := c.platform(ctx)
	if err != nil {
		return nil, err
	}
	if pl != p.opts.BinaryPlatform {
		return nil, fmt.Errorf("host is %s but the bpm binary is built for %s", pl, p.opts.BinaryPlatform)
	}
	p.noteSystemd(ctx, c)
	base := p.base(c)
	bpmBin, err := p.installBinary(ctx, c, p.opts.Binary, path.Join(base, "bin"), "bpm-")
	if err != nil {
		return nil, fmt.Errorf("install bpm: %w", err)
	}
	local, args, err := p.opts.Executable(ctx, req.Package, pl)
	if err != nil {
		return nil, fmt.Errorf("resolve executable: %w", err)
	}
	if !filepath.IsAbs(local) {
		local = filepath.Join(req.Package.Dir, local)
	}
	svcBin, err := p.installBinary(ctx, c, local, path.Join(base, "pkg"), "sha256-")
	if err != nil {
		return nil, fmt.Errorf("install service binary: %w", err)
	}

	dir := path.Join(p.instancesDir(c), req.InstanceID)
	dataDir := path.Join(dir, "data")
	for _, d := range []string{dir, dataDir, path.Join(dir, supervisor.LogDir)} {
		if err := c.sftp.MkdirAll(d); err != nil {
			return nil, fmt.Errorf("mkdir %s: %w", d, err)
		}
		if err := c.sftp.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	env, err := p.environment(c, req, dataDir)
	if err != nil {
		return nil, err
	}
	m := meta{
		InstanceID: req.InstanceID, Remote: req.Remote, Host: c.addr,
		BlueprintID: req.BlueprintID, ServiceID: req.ServiceID,
		GracePeriod: supervisor.Duration(p.opts.GracePeriod), Created: time.Now().UTC(),
	}
	if port := health.FirstTCPPort(req.Package.Manifest.Ports); port != 0 {
		m.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	if hs, ok, err := health.FromManifest(req.Package.Manifest, "127.0.0.1"); err != nil {
		return nil, err
	} else if ok {
		m.Health = &hs
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := c.writeFile(path.Join(dir, metaFile), mb, 0o600); err != nil {
		return nil, err
	}
	// Encoded in memory: the spec holds the env, which must not pass
	// through a local temporary file on its way up.
	spec, err := supervisor.MarshalSpec(supervisor.Spec{
		Path: svcBin, Args: args, Env: env, Dir: dataDir,
		GracePeriod: supervisor.Duration(p.opts.GracePeriod),
	})
	if err != nil {
		return nil, err
	}
	if err := c.writeFile(path.Join(dir, supervisor.SpecFile), spec, 0o600); err != nil {
		return nil, err
	}
	// A status left by an earlier supervisor must not be read as the new
	// one's progress.
	if err := c.sftp.Remove(path.Join(dir, supervisor.StatusFile)); err != nil && !isNotExist(err) {
		return nil, fmt.Errorf("remove stale status: %w", err)
	}

	crashpoint.Hit("ssh/after-upload")
	started := time.Now()
	if err := p.startSupervisorWith(ctx, c, bpmBin, dir); err != nil {
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	h, err := p.waitStarted(ctx, c, dir)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.GracePeriod+10*time.Second)
		defer cancel()
		if serr := p.stop(cctx, c, dir, handle{}, true); serr != nil {
			log.Error("deploy: cleanup after failed start", "err", serr)
		}
		return nil, err
	}
	log.Info("deployed", "supervisor_pid", h.SupervisorPID, "took", time.Since(started))
	return h.encode(), nil
}

// noteSystemd logs, once per connection, whether the host could run
// instances as systemd user units. Issue 7 allows units where systemd is
// found; bpm does not manage them yet (nothing here could test them), so
// this only reports, and a failed detection never fails a deploy.
func (p *Provider) noteSystemd(ctx context.Context, c *hostConn) {
	has, fresh, err := c.hasSystemd(ctx)
	switch {
	case err != nil:
		p.logger.Debug("systemd detection failed", "host", c.addr, "err", err)
	case fresh && has:
		p.logger.Info("host runs systemd with a user manager; instances still run under bpm supervise", "host", c.addr)
	case fresh:
		p.logger.Debug("host has no systemd user manager; instances run under bpm supervise", "host", c.addr)
	}
}

// startSupervisorWith starts `bpm supervise --dir DIR` on the host.
// setsid -f: the supervisor forks into its own session, so it outlives this
// SSH session and the manager; all three standard streams are redirected,
// so the session closes as soon as setsid returns.
func (p *Provider) startSupervisorWith(ctx context.Context, c *hostConn, bpmBin, dir string) error {
	start := command("setsid", "-f", bpmBin, "supervise", "--dir", dir) +
		" </dev/null >>" + quote(path.Join(dir, "supervisor.log")) + " 2>&1"
	_, err := c.run(ctx, start)
	return err
}

// environment is the service's complete environment on the host. Nothing is
// inherited from the login session but what a program expects to find.
func (p *Provider) environment(c *hostConn, req provider.DeployRequest, dataDir string) ([]string, error) {
	env := map[string]string{
		"HOME": c.home,
		"PATH": "/usr/local/bin:/usr/bin:/bin",
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env: invalid variable %q", k)
		}
		env[k] = v
	}
	if _, ok := env["DATA_DIR"]; !ok {
		env["DATA_DIR"] = dataDir
	}
	if _, ok := env["BRIDGE_SOCKET_PATH"]; !ok {
		name := fmt.Sprintf("svc-%d-%d", req.BlueprintID, req.ServiceID)
		env["BRIDGE_SOCKET_PATH"] = path.Join(p.base(c), "run", name, name+".sock")
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

func (p *Provider) readStatus(c *hostConn, dir string) (supervisor.Status, error) {
	var st supervisor.Status
	b, err := c.readFile(path.Join(dir, supervisor.StatusFile), 1<<20)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// waitStarted polls the supervisor's status until the service has started.
// Most services start within a few tens of milliseconds, so the first
// second is polled every 10 ms (one small SFTP read each): at the 50 ms
// used after it, the poll alone added 25 ms to a typical deploy.
func (p *Provider) waitStarted(ctx context.Context, c *hostConn, dir string) (handle, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.StartTimeout)
	defer cancel()
	fastUntil := time.Now().Add(time.Second)
	for {
		every := 50 * time.Millisecond
		if time.Now().Before(fastUntil) {
			every = 10 * time.Millisecond
		}
		if st, err := p.readStatus(c, dir); err == nil {
			switch st.State {
			case supervisor.StateRunning, supervisor.StateBackoff, supervisor.StateExited:
				return handle{Host: c.addr, Dir: dir, SupervisorPID: st.SupervisorPID, SupervisorStart: st.SupervisorStart}, nil
			case supervisor.StateFailed:
				return handle{}, fmt.Errorf("service did not start: %s", st.LastError)
			case supervisor.StateStopped:
				return handle{}, errors.New("supervisor stopped before the service started")
			}
		}
		select {
		case <-ctx.Done():
			return handle{}, fmt.Errorf("waiting for the service to start (see %s): %w", path.Join(dir, "supervisor.log"), ctx.Err())
		case <-c.dead:
			// Polling a dead connection would only wait out the timeout.
			return handle{}, errors.New("waiting for the service to start: connection closed")
		case <-time.After(every):
		}
	}
}

// alive reports whether pid on the host is the process that started at
// start (clock ticks), read from /proc over SFTP: no command, no parsing of
// a shell's output.
func (c *hostConn) alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	b, err := c.readFile("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	got, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && got == start
}

func (p *Provider) supervisorOf(c *hostConn, dir string, h handle) (int, uint64, bool) {
	pid, start := h.SupervisorPID, h.SupervisorStart
	if b, err := c.readFile(path.Join(dir, supervisor.PIDFile), 128); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			if a, err1 := strconv.Atoi(f[0]); err1 == nil {
				if s, err2 := strconv.ParseUint(f[1], 10, 64); err2 == nil {
					pid, start = a, s
				}
			}
		}
	}
	return pid, start, c.alive(pid, start)
}

// find locates an instance: on the host its handle names, else on every
// reachable host in turn. Not found while some host could not be asked is
// an *errUnreached (ErrUnavailable), not ErrNotFound: the instance may run
// there, and the manager must not read it as gone (as for the docker
// runtime).
func (p *Provider) find(ctx context.Context, ref provider.Ref) (*hostConn, string, handle, error) {
	if err := checkID(ref.InstanceID); err != nil {
		return nil, "", handle{}, err
	}
	h, err := decodeHandle(ref.Handle)
	if err != nil {
		return nil, "", handle{}, err
	}
	var errs []error
	for _, addr := range p.hostOrder(h) {
		c, err := p.pool.get(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dir := path.Join(p.instancesDir(c), ref.InstanceID)
		m, err := p.readMeta(c, dir)
		if err == nil && m.Host == addr {
			return c, dir, h, nil
		}
		// Only "no such file" says it is not there; a connection that
		// failed under the read says nothing.
		if err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("%s: %w", addr, c.lost(err)))
		}
	}
	if len(errs) > 0 {
		return nil, "", h, &errUnreached{id: ref.InstanceID, err: errors.Join(errs...)}
	}
	return nil, "", h, fmt.Errorf("instance %s: %w", ref.InstanceID, provider.ErrNotFound)
}

// Status reports the instance's state from its supervisor's files and
// liveness, and probes its health check on the host through the SSH
// connection: no port of the host is exposed for it.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	if p.dockerRuntime() {
		return p.containerStatus(ctx, ref)
	}
	c, dir, h, err := p.find(ctx, ref)
	if err != nil {
		return provider.Status{}, fmt.Errorf("ssh: status: %w", err)
	}
	return p.status(ctx, c, dir, h, true), nil
}

func (p *Provider) status(ctx context.Context, c *hostConn, dir string, h handle, checkHealth bool) provider.Status {
	m, _ := p.readMeta(c, dir)
	st, stErr := p.readStatus(c, dir)
	_, _, alive := p.supervisorOf(c, dir, h)
	out := provider.Status{Address: m.Address, Restarts: st.Restarts, Since: st.Updated}
	out.State, out.Message = supervisor.Observe(st, alive, stErr)
	if out.State == provider.StateRunning {
		out.Since = st.ChildStarted
		if checkHealth && m.Health != nil {
			if err := c.check(ctx, *m.Health); err != nil {
				out.State, out.Message = provider.StateDegraded, err.Error()
			}
		}
	}
	return out
}

// check runs a health check from the host's side: the connection to the
// service's loopback address is a direct-tcpip channel of the SSH
// connection.
func (c *hostConn) check(ctx context.Context, spec health.Spec) error {
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = health.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if spec.HTTPPath == "" {
		conn, err := c.dial(ctx, "tcp", spec.Address)
		if err != nil {
			return fmt.Errorf("health: tcp %s: %w", spec.Address, err)
		}
		return conn.Close()
	}
	code, err := c.get(ctx, spec.Address, spec.HTTPPath)
	if err != nil {
		return fmt.Errorf("health: http %s%s: %w", spec.Address, spec.HTTPPath, err)
	}
	if code < 200 || code >= 400 {
		return fmt.Errorf("health: http %s%s: status %d", spec.Address, spec.HTTPPath, code)
	}
	return nil
}

func (c *hostConn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.client.DialContext(ctx, network, addr)
}

func (c *hostConn) get(ctx context.Context, addr, p string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p, nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: c.dial},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Terminate stops the instance's supervisor, which stops the service's
// process group; a supervisor that ignores SIGTERM is killed, and so is
// any service it left. Terminating an instance that is gone succeeds.
func (p *Provider) Terminate(ctx context.Context, ref provider.Ref) error {
	if err := checkID(ref.InstanceID); err != nil {
		return fmt.Errorf("ssh: terminate: %w", err)
	}
	unlock := p.lock(ref.InstanceID)
	defer unlock()
	if p.dockerRuntime() {
		return p.terminateContainer(ctx, ref)
	}
	c, dir, h, err := p.find(ctx, ref)
	if errors.Is(err, provider.ErrNotFound) {
		return nil // on no host, and every host answered
	}
	if err != nil {
		return fmt.Errorf("ssh: terminate: %w", err)
	}
	if err := p.stop(ctx, c, dir, h, false); err != nil {
		return fmt.Errorf("ssh: terminate %s on %s: %w", ref.InstanceID, c.addr, err)
	}
	p.logger.Info("terminated", "instance", ref.InstanceID, "host", c.addr)
	return nil
}

func (p *Provider) stop(ctx context.Context, c *hostConn, dir string, h handle, keepFinal bool) error {
	grace := p.opts.GracePeriod
	if m, err := p.readMeta(c, dir); err == nil && m.GracePeriod > 0 {
		grace = time.Duration(m.GracePeriod)
	}
	pid, start, alive := p.supervisorOf(c, dir, h)
	if alive {
		_, _ = c.run(ctx, command("kill", "-TERM", strconv.Itoa(pid)))
		if !p.waitDead(ctx, c, grace+5*time.Second, pid, start) {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("waiting for supervisor %d: %w", pid, err)
			}
			p.logger.Warn("supervisor ignored SIGTERM; killing it", "host", c.addr, "pid", pid)
			_, _ = c.run(ctx, command("kill", "-KILL", strconv.Itoa(pid)))
			p.waitDead(ctx, c, 5*time.Second, pid, start)
		}
	}
	st, err := p.readStatus(c, dir)
	if err != nil && !isNotExist(err) {
		return err
	}
	if st.ChildPID > 1 && c.alive(st.ChildPID, st.ChildStartTicks) {
		// The service outlived its supervisor: stop its group directly.
		g := "-" + strconv.Itoa(st.ChildPID)
		_, _ = c.run(ctx, command("kill", "-TERM", "--", g))
		if !p.waitDead(ctx, c, grace, st.ChildPID, st.ChildStartTicks) {
			_, _ = c.run(ctx, command("kill", "-KILL", "--", g))
		}
	}
	if st.State != supervisor.StateStopped && !(keepFinal && st.State.Final()) {
		st.State, st.ChildPID, st.ChildStartTicks = supervisor.StateStopped, 0, 0
		st.Updated = time.Now().UTC()
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := c.writeFile(path.Join(dir, supervisor.StatusFile), b, 0o644); err != nil {
			return err
		}
	}
	// The supervisor is gone: without its pid file, listings (every
	// placement reads every instance directory, and stopped instances keep
	// theirs) skip the instance after one failed open.
	if err := c.sftp.Remove(path.Join(dir, supervisor.PIDFile)); err != nil && !isNotExist(err) {
		return fmt.Errorf("remove %s: %w", supervisor.PIDFile, err)
	}
	return nil
}

func (p *Provider) waitDead(ctx context.Context, c *hostConn, d time.Duration, pid int, start uint64) bool {
	deadline := time.Now().Add(d)
	for c.alive(pid, start) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// ListOwned lists the instances with a live supervisor on every reachable
// host. An unreachable host is an error: reconcile must not read its
// instances as gone.
func (p *Provider) ListOwned(ctx context.Context) ([]provider.Owned, error) {
	if p.dockerRuntime() {
		return p.listContainers(ctx)
	}
	var out []provider.Owned
	for _, addr := range p.hosts {
		c, err := p.pool.get(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("ssh: list: %w", err)
		}
		owned, err := p.listHost(ctx, c, true)
		if err != nil {
			return nil, fmt.Errorf("ssh: list %s: %w", addr, err)
		}
		out = append(out, owned...)
	}
	return out, nil
}

// listConcurrency bounds the SFTP requests listHost keeps in flight.
const listConcurrency = 16

// listHost lists the instances with a live supervisor on the host, with
// their state when withState is set (placement only needs who is there).
// Each instance costs a few SFTP round trips (its meta, its pid file, its
// /proc entry) and terminated instances keep their directory, so the
// instances are looked at concurrently over the one SFTP session: a host
// with many costs a few round trips' time, not their sum.
func (p *Provider) listHost(ctx context.Context, c *hostConn, withState bool) ([]provider.Owned, error) {
	entries, err := c.sftp.ReadDir(p.instancesDir(c))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	found := make([]*provider.Owned, len(entries))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, e := range entries {
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return nil, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dir := path.Join(p.instancesDir(c), e.Name())
			// Liveness first, which a stopped instance fails at once (no
			// pid file); then whether it is this host's (homes may be
			// shared, and so may the pid namespace).
			pid, start, alive := p.supervisorOf(c, dir, handle{})
			if !alive {
				return
			}
			if m, err := p.readMeta(c, dir); err != nil || m.Host != c.addr {
				return
			}
			o := provider.Owned{
				InstanceID: e.Name(),
				Handle:     handle{Host: c.addr, Dir: dir, SupervisorPID: pid, SupervisorStart: start}.encode(),
			}
			if withState {
				o.State = p.status(ctx, c, dir, handle{}, false).State
			}
			found[i] = &o
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []provider.Owned
	for _, o := range found {
		if o != nil {
			out = append(out, *o)
		}
	}
	return out, nil
}
