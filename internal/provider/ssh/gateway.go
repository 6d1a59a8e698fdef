package ssh

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/supervisor"
)

// gatewayMeta is gateway.json next to the gateway's spec.json: which host
// runs it. Hosts may share a home directory, so the pid file alone cannot
// say whose /proc to check it against.
type gatewayMeta struct {
	Remote  string    `json:"remote"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"`
}

const gatewayMetaFile = "gateway.json"

func (p *Provider) gatewayDir(c *hostConn, remote string) string {
	return path.Join(p.base(c), "gateway", remote)
}

// EstablishTunnel runs the remote's gateway as `bpm gateway` under `bpm
// supervise` on one host, from the same uploaded bpm binary the native
// runtime uses. The gateway's configuration, private key included, reaches
// the host only inside spec.json (0600, over SFTP): `bpm gateway` reads it
// from the environment the supervisor gives it, never from a command line.
//
// It is idempotent: a live gateway started from the same spec is left
// alone, on whichever host it runs; one started from a different spec
// (a new key, hub, or bpm binary) is stopped and replaced. A new gateway
// goes to the first reachable host in config order.
//
// The gateway outlives the remote's instances: Terminate never stops it.
// It is one small process, the next deploy reuses it instead of waiting
// for a new handshake, and its lifetime is the remote's (the manager
// decides when a remote goes away), not any one instance's.
func (p *Provider) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	if err := checkID(spec.Remote); err != nil {
		return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel: remote name: %w", err)
	}
	// Instance ids never contain '/', so this key cannot meet one.
	name := provider.PeerName(spec.Remote, spec.Site)
	unlock := p.lock("gateway/" + name)
	defer unlock()
	if p.dockerRuntime() {
		return p.establishContainer(ctx, spec)
	}
	var err error
	if spec.Site != "" {
		err = p.establishSite(ctx, spec)
	} else {
		err = p.establish(ctx, spec)
	}
	if err != nil {
		return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel %s: %w", name, err)
	}
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// establishSite runs the gateway of one site (a host: see Place) on that
// host, in its own directory gateway/REMOTE.SITE, since the hosts of a
// test or a cluster may share a home directory.
func (p *Provider) establishSite(ctx context.Context, spec provider.TunnelSpec) error {
	addr, ok := p.hostOf[spec.Site]
	if !ok {
		return fmt.Errorf("site %q is none of the remote's hosts", spec.Site)
	}
	c, err := p.pool.get(ctx, addr)
	if err != nil {
		return fmt.Errorf("host %s: %w", addr, err)
	}
	name := provider.PeerName(spec.Remote, spec.Site)
	var cur *hostConn
	if m, err := p.readGatewayMeta(c, name); err == nil && m.Host == c.addr {
		if _, _, alive := p.supervisorOf(c, p.gatewayDir(c, name), handle{}); alive {
			cur = c
		}
	}
	return p.ensureGateway(ctx, p.logger.With("remote", spec.Remote, "site", spec.Site), c, cur, name, spec)
}

func (p *Provider) establish(ctx context.Context, spec provider.TunnelSpec) error {
	log := p.logger.With("remote", spec.Remote)
	var reachable []*hostConn
	var errs []error
	for _, addr := range p.hosts {
		c, err := p.pool.get(ctx, addr)
		if err != nil {
			log.Warn("host unreachable; no gateway there", "host", addr, "err", err)
			errs = append(errs, err)
			continue
		}
		reachable = append(reachable, c)
	}
	if len(reachable) == 0 {
		return fmt.Errorf("no host reachable: %w: %w", provider.ErrUnavailable, errors.Join(errs...))
	}

	// Find the gateway this remote already has on a reachable host.
	var cur *hostConn
	for _, c := range reachable {
		m, err := p.readGatewayMeta(c, spec.Remote)
		if err == nil && m.Host == c.addr {
			if _, _, alive := p.supervisorOf(c, p.gatewayDir(c, spec.Remote), handle{}); alive {
				cur = c
				break
			}
		}
	}
	target := reachable[0]
	if cur != nil {
		target = cur
	}
	// Two gateways with one key would steal the hub's session from each
	// other; one left on a host that was unreachable when its replacement
	// started elsewhere goes now.
	for _, c := range reachable {
		if c == target {
			continue
		}
		d := p.gatewayDir(c, spec.Remote)
		if m, err := p.readGatewayMeta(c, spec.Remote); err == nil && m.Host == c.addr {
			if _, _, alive := p.supervisorOf(c, d, handle{}); alive {
				log.Info("stopping a second gateway", "host", c.addr, "keeping", target.addr)
				if err := p.stop(ctx, c, d, handle{}, false); err != nil {
					log.Warn("stop second gateway", "host", c.addr, "err", err)
				}
			}
		}
	}
	return p.ensureGateway(ctx, log, target, cur, spec.Remote, spec)
}

// ensureGateway makes the gateway called name (its directory under
// gateway/) run on target from spec: kept when cur (target or nil) already
// runs that exact spec, replaced when its spec differs, started otherwise.
func (p *Provider) ensureGateway(ctx context.Context, log *slog.Logger, target, cur *hostConn, name string, spec provider.TunnelSpec) error {
	dir := p.gatewayDir(target, name)
	bpmBin, want, err := p.gatewaySpec(ctx, target, dir, spec)
	if err != nil {
		return err
	}
	if cur != nil {
		have, err := cur.readFile(path.Join(dir, supervisor.SpecFile), 1<<20)
		// Constant time: the spec holds the private key.
		if err == nil && subtle.ConstantTimeCompare(have, want) == 1 {
			log.Debug("gateway already running", "host", cur.addr)
			return nil
		}
		log.Info("gateway spec changed; replacing it", "host", cur.addr)
		if err := p.stop(ctx, cur, dir, handle{}, false); err != nil {
			return fmt.Errorf("stop the old gateway on %s: %w", cur.addr, err)
		}
	}

	for _, d := range []string{dir, path.Join(dir, supervisor.LogDir)} {
		if err := target.sftp.MkdirAll(d); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
		if err := target.sftp.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("chmod %s: %w", d, err)
		}
	}
	mb, _ := json.MarshalIndent(gatewayMeta{Remote: name, Host: target.addr, Created: time.Now().UTC()}, "", "  ")
	if err := target.writeFile(path.Join(dir, gatewayMetaFile), mb, 0o600); err != nil {
		return err
	}
	if err := target.writeFile(path.Join(dir, supervisor.SpecFile), want, 0o600); err != nil {
		return err
	}
	if err := target.sftp.Remove(path.Join(dir, supervisor.StatusFile)); err != nil && !isNotExist(err) {
		return fmt.Errorf("remove stale status: %w", err)
	}
	if err := p.startSupervisorWith(ctx, target, bpmBin, dir); err != nil {
		return fmt.Errorf("start gateway supervisor on %s: %w", target.addr, err)
	}
	h, err := p.waitStarted(ctx, target, dir)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.GracePeriod+10*time.Second)
		defer cancel()
		if serr := p.stop(cctx, target, dir, handle{}, true); serr != nil {
			log.Error("tunnel: cleanup after failed start", "err", serr)
		}
		return fmt.Errorf("gateway on %s: %w", target.addr, err)
	}
	log.Info("gateway started", "host", target.addr, "supervisor_pid", h.SupervisorPID)
	return nil
}

// gatewaySpec installs the bpm binary on c and returns its path and the
// gateway's spec.json. Its environment is exactly spec.GatewayEnv(): the supervisor passes
// on nothing else, so the login session's variables cannot change how the
// gateway behaves.
func (p *Provider) gatewaySpec(ctx context.Context, c *hostConn, dir string, spec provider.TunnelSpec) (string, []byte, error) {
	pl, err := c.platform(ctx)
	if err != nil {
		return "", nil, err
	}
	if pl != p.opts.BinaryPlatform {
		return "", nil, fmt.Errorf("host %s is %s but the bpm binary is built for %s", c.addr, pl, p.opts.BinaryPlatform)
	}
	bpmBin, err := p.installBinary(ctx, c, p.opts.Binary, path.Join(p.base(c), "bin"), "bpm-")
	if err != nil {
		return "", nil, fmt.Errorf("install bpm: %w", err)
	}
	genv := spec.GatewayEnv()
	env := make([]string, 0, len(genv))
	for _, k := range slices.Sorted(maps.Keys(genv)) {
		env = append(env, k+"="+genv[k])
	}
	b, err := supervisor.MarshalSpec(supervisor.Spec{
		Path: bpmBin, Args: []string{"gateway"}, Env: env, Dir: dir,
		GracePeriod: supervisor.Duration(p.opts.GracePeriod),
		// The tunnel must come back whatever ended it: a gateway that
		// exits cleanly without being told to is as gone as one that
		// crashed.
		Restart: supervisor.Restart{Policy: supervisor.RestartAlways},
	})
	return bpmBin, b, err
}

func (p *Provider) readGatewayMeta(c *hostConn, remote string) (gatewayMeta, error) {
	var m gatewayMeta
	b, err := c.readFile(path.Join(p.gatewayDir(c, remote), gatewayMetaFile), 1<<16)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", gatewayMetaFile, err)
	}
	return m, nil
}
