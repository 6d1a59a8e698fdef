package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// inheritedEnv is all a service takes from the manager's own environment.
// Anything else — in particular the manager's credentials — must be passed
// deliberately in DeployRequest.Env.
var inheritedEnv = []string{"PATH", "HOME", "LANG", "TZ"}

// Deploy starts the instance under a new supervisor and returns once the
// service process exists. It is idempotent: an instance whose supervisor is
// alive is returned as is. On error no process of the instance is left.
func (p *Provider) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	if err := checkID(req.InstanceID); err != nil {
		return nil, fmt.Errorf("local: deploy: %w", err)
	}
	if req.Package != nil && req.Package.Manifest.WantsVM() {
		// Refused, not run with less than asked: a local instance is a
		// process sharing this machine's kernel.
		return nil, fmt.Errorf("local: deploy %s: the manifest's isolation = %q cannot be given locally (instances are processes on this machine): %w",
			req.InstanceID, req.Package.Manifest.Isolation, provider.ErrUnsupported)
	}
	h, err := p.deploy(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("local: deploy %s: %w", req.InstanceID, err)
	}
	return h, nil
}

func (p *Provider) deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	unlock := p.lock(req.InstanceID)
	defer unlock()
	log := p.logger.With("instance", req.InstanceID)
	dir := filepath.Join(p.dir, req.InstanceID)

	if pid, start, alive := supervisorOf(dir, handle{}); alive {
		log.Debug("deploy: supervisor already running", "pid", pid)
		return handle{Dir: dir, SupervisorPID: pid, SupervisorStart: start}.encode(), nil
	}
	if req.Package == nil {
		return nil, errors.New("no package")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A service that outlived a crashed supervisor would be duplicated by a
	// new one; stop it first.
	if st, err := supervisor.ReadStatus(dir); err == nil {
		if pid, ok := orphan(st); ok {
			log.Warn("deploy: stopping unsupervised service left by a dead supervisor", "pid", pid)
			stopGroup(ctx, pid, st.ChildStartTicks, p.opts.GracePeriod)
		}
	}

	path, args, err := p.opts.Executable(ctx, req.Package)
	if err != nil {
		return nil, fmt.Errorf("resolve executable: %w", err)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(req.Package.Dir, path)
	}

	// Held from the port check until instance.json records this
	// instance's ports, so two deploys cannot both claim a port. Taken
	// after resolving the executable, which may run a whole `go build`
	// that other deploys need not wait for.
	p.portMu.Lock()
	portsLocked := true
	unlockPorts := func() {
		if portsLocked {
			portsLocked = false
			p.portMu.Unlock()
		}
	}
	defer unlockPorts()
	ports := tcpPorts(req.Package.Manifest.Ports)
	if err := p.portsFree(ctx, req.InstanceID, ports); err != nil {
		return nil, err
	}

	dataDir := filepath.Join(dir, "data")
	for _, d := range []string{dir, dataDir, filepath.Join(dir, supervisor.LogDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	env, err := p.environment(req, dataDir)
	if err != nil {
		return nil, err
	}

	m := meta{
		InstanceID:  req.InstanceID,
		Remote:      req.Remote,
		BlueprintID: req.BlueprintID,
		ServiceID:   req.ServiceID,
		GracePeriod: supervisor.Duration(p.opts.GracePeriod),
		Created:     time.Now().UTC(),
	}
	if port := health.FirstTCPPort(req.Package.Manifest.Ports); port != 0 {
		m.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	if hs, ok, err := health.FromManifest(req.Package.Manifest, "127.0.0.1"); err != nil {
		return nil, err
	} else if ok {
		m.Health = &hs
	}
	m.Ports = ports
	if err := writeMeta(dir, m); err != nil {
		return nil, fmt.Errorf("write %s: %w", metaFile, err)
	}
	unlockPorts()
	spec := supervisor.Spec{
		Path:        path,
		Args:        args,
		Env:         env,
		Dir:         p.opts.WorkDir,
		GracePeriod: supervisor.Duration(p.opts.GracePeriod),
		Restart:     p.opts.Restart,
		Logs:        p.opts.Logs,
	}
	if err := supervisor.WriteSpec(dir, spec); err != nil {
		return nil, err
	}
	// A status left by an earlier supervisor must not be mistaken for the
	// new one's progress.
	if err := os.Remove(filepath.Join(dir, supervisor.StatusFile)); err != nil && !isNotExist(err) {
		return nil, fmt.Errorf("remove stale status: %w", err)
	}

	started := time.Now()
	h, err := p.startSupervisor(ctx, dir)
	if err != nil {
		return nil, err
	}
	log.Info("deployed", "supervisor_pid", h.SupervisorPID, "took", time.Since(started))
	return h.encode(), nil
}

// environment builds the service's complete environment as sorted
// KEY=VALUE entries. Values are never logged.
func (p *Provider) environment(req provider.DeployRequest, dataDir string) ([]string, error) {
	env := map[string]string{}
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
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
		env["BRIDGE_SOCKET_PATH"] = p.BridgeSocketPath(req.BlueprintID, req.ServiceID)
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

// BridgeSocketPath is the base bridge socket of a service, as the Blueprint
// SDK lays it out: <RuntimeDir>/svc-<bid>-<sid>/svc-<bid>-<sid>.sock.
func (p *Provider) BridgeSocketPath(blueprintID, serviceID uint64) string {
	name := fmt.Sprintf("svc-%d-%d", blueprintID, serviceID)
	return filepath.Join(p.opts.RuntimeDir, name, name+".sock")
}

// startSupervisor starts `<SupervisorCommand> --dir dir` in its own session
// and waits until it reports the service started. On any failure it stops
// whatever it started.
func (p *Provider) startSupervisor(ctx context.Context, dir string) (handle, error) {
	out, err := os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return handle{}, fmt.Errorf("open supervisor log: %w", err)
	}
	argv := append(slices.Clone(p.opts.SupervisorCommand), "--dir", dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = p.supervisorEnv()
	cmd.Stdout, cmd.Stderr = out, out // Stdin stays nil: /dev/null
	// A new session: no controlling terminal, and neither the manager's
	// process group nor a terminal hang-up reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	out.Close()
	if err != nil {
		return handle{}, fmt.Errorf("start supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap it whenever it exits, so it never lingers as a zombie of ours.
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	h, err := p.waitStarted(ctx, dir, pid, exited)
	if err != nil {
		// Leave nothing behind: the caller's ctx may be done, so clean up
		// under a fresh bound.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.GracePeriod+5*time.Second)
		defer cancel()
		start, _ := supervisor.ProcessStartTime(pid)
		if serr := p.stopSupervisor(cctx, dir, pid, start, p.opts.GracePeriod, exited, true); serr != nil {
			p.logger.Error("deploy: cleanup after failed start", "dir", dir, "err", serr)
		}
		return handle{}, err
	}
	return h, nil
}

func (p *Provider) waitStarted(ctx context.Context, dir string, pid int, exited <-chan struct{}) (handle, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := supervisor.ReadStatus(dir)
		if err == nil && st.SupervisorPID == pid {
			switch st.State {
			case supervisor.StateRunning, supervisor.StateBackoff, supervisor.StateExited:
				// The service process was created; whether it stays up is
				// for Status to report.
				return handle{Dir: dir, SupervisorPID: pid, SupervisorStart: st.SupervisorStart}, nil
			case supervisor.StateFailed:
				<-exitedOr(ctx, exited)
				return handle{}, fmt.Errorf("service did not start: %s", st.LastError)
			case supervisor.StateStopped:
				return handle{}, errors.New("supervisor stopped before the service started")
			}
		}
		select {
		case <-exited:
			// Re-read once: the final status may have landed just now.
			if st, err := supervisor.ReadStatus(dir); err == nil && st.SupervisorPID == pid && st.State == supervisor.StateFailed {
				return handle{}, fmt.Errorf("service did not start: %s", st.LastError)
			}
			// Another supervisor owning the directory (a concurrent deploy
			// from another manager process) makes this deploy a no-op.
			if opid, ostart, alive := supervisorOf(dir, handle{}); alive && opid != pid {
				return handle{Dir: dir, SupervisorPID: opid, SupervisorStart: ostart}, nil
			}
			return handle{}, fmt.Errorf("supervisor exited before starting the service; see %s", filepath.Join(dir, "supervisor.log"))
		case <-ctx.Done():
			return handle{}, fmt.Errorf("waiting for the service to start: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func exitedOr(ctx context.Context, exited <-chan struct{}) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		select {
		case <-exited:
		case <-ctx.Done():
		}
		close(c)
	}()
	return c
}

func (p *Provider) supervisorEnv() []string {
	var env []string
	for _, k := range inheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, p.opts.SupervisorEnv...)
}

// portsFree refuses a deploy whose TCP ports another live instance has
// declared or something else on this machine holds. Local instances share
// the host's ports; without this check a second instance of a package would
// crash-loop on "address in use" while its health check, answered by the
// first, said it was fine. The bind probe races with other programs, which
// the service's own bind still catches.
func (p *Provider) portsFree(ctx context.Context, self string, ports []int) error {
	if len(ports) == 0 {
		return nil
	}
	owned, err := p.ListOwned(ctx)
	if err != nil {
		return err
	}
	for _, o := range owned {
		if o.InstanceID == self {
			continue
		}
		m, err := readMeta(filepath.Join(p.dir, o.InstanceID))
		if err != nil {
			continue
		}
		for _, port := range ports {
			if slices.Contains(m.Ports, port) {
				return fmt.Errorf("port %d is already used by instance %s: %w", port, o.InstanceID, provider.ErrExists)
			}
		}
	}
	for _, port := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("port %d is already in use on this machine: %w", port, provider.ErrExists)
		}
		l.Close()
	}
	return nil
}

func tcpPorts(ports []blueprint.Port) []int {
	var out []int
	for _, pt := range ports {
		if pt.Protocol == "" || pt.Protocol == "tcp" {
			out = append(out, pt.Port)
		}
	}
	return out
}
