package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"

	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/docker"
)

// The docker runtime: each host's Docker Engine is driven by the docker
// provider itself, one docker.Provider per host, whose every API request
// travels over a direct-streamlocal channel of that host's SSH connection
// to the engine's unix socket. Nothing listens on the host's network for
// it, and there is one Engine API client in bpm, not two. This file only
// adds what spreading a remote over several engines needs: placement,
// finding which host holds an instance, and one gateway per remote.

// socketPath is the engine socket's path on the hosts.
func (p *Provider) socketPath() string {
	s := p.cfg.Runtime.DockerSocket
	if s == "" {
		s = DefaultDockerSocket
	}
	u, err := url.Parse(s)
	if err != nil {
		return s // Validate refused this already
	}
	return u.Path
}

// engine returns the docker provider for the engine on host addr, built on
// first use. It holds no connection of its own: each request dials the
// socket through the host's pooled SSH connection, redialled if it
// dropped.
func (p *Provider) engine(addr string) (*docker.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.engines[addr]; ok {
		return e, nil
	}
	sock := p.socketPath()
	dc := docker.NewConfig()
	// The cap is the ssh remote's, over all hosts; placement enforces it.
	dc.Tunnel, dc.Pricing = p.cfg.Tunnel, p.cfg.Pricing
	// Each host is a site (sites.go) with its own gateway: its containers,
	// network, bridge volume and gateway are named for REMOTE.SITE, so
	// hosts that reach one engine never touch each other's objects.
	e, err := docker.New(provider.PeerName(p.opts.Remote, p.siteOf[addr]), dc, docker.Options{
		Dial: func(ctx context.Context) (net.Conn, error) {
			c, err := p.pool.get(ctx, addr)
			if err != nil {
				return nil, err
			}
			conn, err := c.client.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, fmt.Errorf("ssh: %s: docker socket %s: %w", addr, sock, err)
			}
			return conn, nil
		},
		GatewayBinary: p.gatewayBinary,
		Progress:      p.opts.Progress,
		Logger:        p.opts.Logger.With("provider", Type, "host", addr),
	})
	if err != nil {
		return nil, fmt.Errorf("ssh: %s: %w", addr, err)
	}
	p.engines[addr] = e
	return e, nil
}

// engineLoad is hostLoad for the docker runtime: the engine's CPUs and
// memory, and the remote's containers on it.
func (p *Provider) engineLoad(ctx context.Context, addr string) (provider.Resources, []string, error) {
	e, err := p.engine(addr)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	r, err := e.Resources(ctx)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	owned, err := e.ListOwned(ctx)
	if err != nil {
		return provider.Resources{}, nil, err
	}
	return provider.Resources{CPUMillis: r.CPUMillis, MemoryBytes: r.MemoryBytes}, ownedIDs(owned), nil
}

// hostOrder is the hosts to search for an instance: the one its handle
// names first.
func (p *Provider) hostOrder(h handle) []string {
	if h.Host == "" || !slices.Contains(p.hosts, h.Host) {
		return p.hosts
	}
	return append([]string{h.Host}, slices.DeleteFunc(slices.Clone(p.hosts), func(s string) bool { return s == h.Host })...)
}

// errUnreached says an instance was not found on the hosts that answered
// while others did not: it may be on one of those, so it is not known to
// be gone.
type errUnreached struct {
	id  string
	err error
}

func (e *errUnreached) Error() string {
	return fmt.Sprintf("instance %s not found on the reachable hosts (unreachable: %v)", e.id, e.err)
}

func (e *errUnreached) Unwrap() error { return provider.ErrUnavailable }

// locate finds the host whose engine holds the instance's container, and
// returns the docker provider's ref for it.
func (p *Provider) locate(ctx context.Context, ref provider.Ref) (string, *docker.Provider, provider.Ref, error) {
	if err := checkID(ref.InstanceID); err != nil {
		return "", nil, provider.Ref{}, err
	}
	h, err := decodeHandle(ref.Handle)
	if err != nil {
		return "", nil, provider.Ref{}, err
	}
	dref := provider.Ref{InstanceID: ref.InstanceID, Remote: ref.Remote, Handle: provider.Handle(h.Docker)}
	var errs []error
	for _, addr := range p.hostOrder(h) {
		e, err := p.engine(addr)
		if err == nil {
			var ok bool
			if ok, err = e.Owns(ctx, ref.InstanceID); err == nil && ok {
				return addr, e, dref, nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	if len(errs) > 0 {
		return "", nil, dref, &errUnreached{id: ref.InstanceID, err: errors.Join(errs...)}
	}
	return "", nil, dref, fmt.Errorf("instance %s: %w", ref.InstanceID, provider.ErrNotFound)
}

func containerHandle(addr string, dh provider.Handle) provider.Handle {
	return handle{Host: addr, Docker: []byte(dh)}.encode()
}

// deployContainer deploys on the host that already holds the instance (a
// retry: the docker provider starts what is there), else on the host
// placement picks. The caller holds the instance's lock.
func (p *Provider) deployContainer(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	ref := provider.Ref{InstanceID: req.InstanceID, Remote: req.Remote}
	addr, e, _, err := p.locate(ctx, ref)
	if err != nil && req.Site != "" && (errors.Is(err, provider.ErrNotFound) || errors.As(err, new(*errUnreached))) {
		// Placed already (Place): the site's host.
		var ok bool
		if addr, ok = p.hostOf[req.Site]; !ok {
			return nil, fmt.Errorf("ssh: deploy %s: site %q is none of the remote's hosts", req.InstanceID, req.Site)
		}
		if r, ok := p.takeReservation(req.InstanceID); ok {
			defer r.release()
		}
		e, err = p.engine(addr)
		if err != nil {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
	} else if err != nil {
		if !errors.Is(err, provider.ErrNotFound) && !errors.As(err, new(*errUnreached)) {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
		// Not on any reachable host. One that is down may hold it from an
		// interrupted deploy; the hosts that answer are the ones that can
		// run it now, and reconcile sorts out a duplicate by id when the
		// other comes back (as for the native runtime).
		var release func()
		addr, release, err = p.place(ctx, req.InstanceID)
		if err != nil {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
		defer release()
		if e, err = p.engine(addr); err != nil {
			return nil, fmt.Errorf("ssh: deploy %s: %w", req.InstanceID, err)
		}
	}
	dh, err := e.Deploy(ctx, req)
	if err != nil {
		if c := p.pool.current(addr); c != nil {
			err = c.lost(err)
		}
		return nil, fmt.Errorf("ssh: deploy %s on %s: %w", req.InstanceID, addr, err)
	}
	p.logger.Info("container deployed", "instance", req.InstanceID, "host", addr)
	return containerHandle(addr, dh), nil
}

func (p *Provider) containerStatus(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	addr, e, dref, err := p.locate(ctx, ref)
	if err != nil {
		return provider.Status{}, fmt.Errorf("ssh: status: %w", err)
	}
	st, err := e.StatusWith(ctx, dref, func(ctx context.Context, spec health.Spec) error {
		// From the host's side: the container's address is on the host's
		// private Docker network.
		c, err := p.pool.get(ctx, addr)
		if err != nil {
			return err
		}
		return c.check(ctx, spec)
	})
	if err != nil {
		return provider.Status{}, fmt.Errorf("ssh: status on %s: %w", addr, err)
	}
	return st, nil
}

// terminateContainer removes the instance's container from whichever host
// holds it. Gone from every host is success; not found while a host is
// unreachable is an error, since the container may be there.
func (p *Provider) terminateContainer(ctx context.Context, ref provider.Ref) error {
	addr, e, dref, err := p.locate(ctx, ref)
	if errors.Is(err, provider.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ssh: terminate: %w", err)
	}
	if err := e.Terminate(ctx, dref); err != nil {
		return fmt.Errorf("ssh: terminate %s on %s: %w", ref.InstanceID, addr, err)
	}
	p.logger.Info("terminated", "instance", ref.InstanceID, "host", addr)
	return nil
}

func (p *Provider) containerLogs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	addr, e, dref, err := p.locate(ctx, ref)
	if err != nil {
		return fmt.Errorf("ssh: logs: %w", err)
	}
	if err := e.Logs(ctx, dref, opts, w); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("ssh: logs on %s: %w", addr, err)
	}
	return nil
}

// listContainers lists the remote's containers on every host. An
// unreachable host is an error: reconcile must not read its instances as
// gone. Each host lists only its own site's containers, so hosts that
// reach one engine never list a container twice.
func (p *Provider) listContainers(ctx context.Context) ([]provider.Owned, error) {
	var out []provider.Owned
	for _, addr := range p.hosts {
		e, err := p.engine(addr)
		if err != nil {
			return nil, fmt.Errorf("ssh: list: %w", err)
		}
		owned, err := e.ListOwned(ctx)
		if err != nil {
			return nil, fmt.Errorf("ssh: list %s: %w", addr, err)
		}
		for _, o := range owned {
			o.Handle = containerHandle(addr, o.Handle)
			out = append(out, o)
		}
	}
	return out, nil
}

// establishContainer keeps the remote's one gateway container: where it
// already is, else on the first reachable host; a gateway found on any
// other host is removed, since two holding one key would take the hub's
// session from each other. The docker provider does the rest (image from
// the bpm binary, same config kept, changed config replaced).
func (p *Provider) establishContainer(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	if spec.Site != "" {
		// A site's gateway runs on its host's engine, beside the
		// containers of that site.
		addr, ok := p.hostOf[spec.Site]
		if !ok {
			return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel: site %q is none of the remote's hosts", spec.Site)
		}
		e, err := p.engine(addr)
		if err != nil {
			return provider.TunnelInfo{}, err
		}
		info, err := e.EstablishTunnel(ctx, spec)
		if err != nil {
			return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel %s on %s: %w", provider.PeerName(spec.Remote, spec.Site), addr, err)
		}
		return info, nil
	}
	type eng struct {
		addr string
		e    *docker.Provider
		has  bool
	}
	var reachable []eng
	var errs []error
	for _, addr := range p.hosts {
		e, err := p.engine(addr)
		if err == nil {
			var has bool
			if has, err = e.HasGateway(ctx); err == nil {
				reachable = append(reachable, eng{addr, e, has})
				continue
			}
		}
		p.logger.Warn("host unreachable; no gateway there", "host", addr, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if len(reachable) == 0 {
		return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel %s: no host reachable: %w: %w", spec.Remote, provider.ErrUnavailable, errors.Join(errs...))
	}
	target := reachable[0]
	for _, r := range reachable {
		if r.has {
			target = r
			break
		}
	}
	for _, r := range reachable {
		if r.has && r.addr != target.addr {
			p.logger.Info("removing a second gateway", "host", r.addr, "keeping", target.addr)
			if err := r.e.RemoveGateway(ctx); err != nil {
				p.logger.Warn("remove second gateway", "host", r.addr, "err", err)
			}
		}
	}
	info, err := target.e.EstablishTunnel(ctx, spec)
	if err != nil {
		return provider.TunnelInfo{}, fmt.Errorf("ssh: tunnel %s on %s: %w", spec.Remote, target.addr, err)
	}
	return info, nil
}
