package ssh

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

// Sites. A native instance binds to its own host's loopback, and a
// container to its host engine's private network, so only a gateway on that
// host can reach it: the provider is a provider.Sited whose sites are its
// hosts, each with its own gateway and hub peer (REMOTE.SITE). Place runs
// the same placement Deploy would and reserves the host; the manager then
// establishes that site's tunnel and calls Deploy with the site.

var _ provider.Sited = (*Provider)(nil)

// reserveFor bounds how long a placement waits for its Deploy: the manager
// deploys within its own 10-minute deploy deadline, or not at all (a
// failed tunnel), and a reservation nobody takes must not skew placement
// forever.
const reserveFor = 10 * time.Minute

// reservation is a host Place chose for a deploy to come.
type reservation struct {
	addr    string
	release func()
	timer   *time.Timer
}

// siteName is a host's site: its address spelt as a site name (lower case
// letters, digits and dashes), e.g. 10.0.0.5:22 → 10-0-0-5-22.
func siteName(addr string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(addr) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if len(s) > 63 {
		s = strings.TrimSuffix(s[:63], "-")
	}
	if s == "" {
		s = "host"
	}
	return s
}

// Place picks the host of a new instance and returns its site; the
// host stays reserved for req.InstanceID until Deploy takes it.
func (p *Provider) Place(ctx context.Context, req provider.DeployRequest) (string, error) {
	if err := checkID(req.InstanceID); err != nil {
		return "", fmt.Errorf("ssh: place: %w", err)
	}
	if req.Package != nil {
		if err := p.Accepts(req.Package); err != nil {
			return "", fmt.Errorf("ssh: place %s: %w", req.InstanceID, err)
		}
	}
	addr, release, err := p.place(ctx, req.InstanceID)
	if err != nil {
		return "", fmt.Errorf("ssh: place %s: %w", req.InstanceID, err)
	}
	id := req.InstanceID
	r := reservation{addr: addr, release: release}
	r.timer = time.AfterFunc(reserveFor, func() { p.unreserve(id) })
	p.mu.Lock()
	if old, ok := p.reserved[id]; ok {
		old.timer.Stop()
		defer old.release()
	}
	p.reserved[id] = r
	p.mu.Unlock()
	return p.siteOf[addr], nil
}

// Accepts refuses what no host can give: a VM boundary (both runtimes
// share the host's kernel). Which source runs is decided per host.
func (p *Provider) Accepts(pkg *blueprint.Package) error {
	if pkg.Manifest.WantsVM() {
		return fmt.Errorf("the manifest's isolation = %q cannot be given on an ssh remote (instances are processes or containers on the host): %w",
			pkg.Manifest.Isolation, provider.ErrUnsupported)
	}
	return nil
}

// takeReservation returns (and forgets) the host reserved for id, with
// the release its deploy calls when it returns.
func (p *Provider) takeReservation(id string) (reservation, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.reserved[id]
	if ok {
		delete(p.reserved, id)
		r.timer.Stop()
	}
	return r, ok
}

func (p *Provider) unreserve(id string) {
	if r, ok := p.takeReservation(id); ok {
		r.release()
	}
}

// SiteBridgeSocketPath is where an instance at site dials its bridge: for
// the docker runtime the docker provider's convention (a socket in the
// site's bridge volume, which its gateway container mounts too); for the
// native runtime a socket under the host's ~/.bpm/bridge/, which the
// site's gateway — the same user on the same host — serves. "" when the
// site's host cannot be reached (the instance then runs without a bridge,
// as upstream's remote deployments may).
func (p *Provider) SiteBridgeSocketPath(site string, blueprintID, serviceID uint64) string {
	if p.dockerRuntime() {
		return bridge.SocketPath(gateway.BridgeDir, blueprintID, serviceID)
	}
	addr, ok := p.hostOf[site]
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DialTimeout)
	defer cancel()
	c, err := p.pool.get(ctx, addr)
	if err != nil {
		return ""
	}
	return bridge.SocketPath(path.Join(p.base(c), "bridge"), blueprintID, serviceID)
}
