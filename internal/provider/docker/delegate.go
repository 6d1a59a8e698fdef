package docker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/provider"
)

// This file holds what a provider that embeds this one needs beyond the
// provider interface: the ssh provider's docker runtime runs one Provider
// per host, each built with Options.Dial so its engine is reached through
// that host's SSH connection.

// CheckFunc runs one health check; health.Check is the direct one.
type CheckFunc func(ctx context.Context, spec health.Spec) error

// StatusWith is Status with the health check run by check instead of from
// this process: a container's address is on the engine host's private
// network, which an embedding provider reaches only through its own
// transport (an SSH direct-tcpip channel from that host).
func (p *Provider) StatusWith(ctx context.Context, ref provider.Ref, check CheckFunc) (provider.Status, error) {
	name, err := p.nameOf(ref)
	if err != nil {
		return provider.Status{}, fmt.Errorf("docker: status: %w", err)
	}
	c, err := p.cli.containerInspect(ctx, name)
	if isStatus(err, http.StatusNotFound) {
		return provider.Status{}, fmt.Errorf("docker: status %s: %w", name, provider.ErrNotFound)
	}
	if err != nil {
		return provider.Status{}, p.wrap("inspect "+name, err)
	}
	if c.Config.Labels[labelInstance] != ref.InstanceID || c.Config.Labels[labelRemote] != p.remote {
		return provider.Status{}, fmt.Errorf("docker: status %s: container is not this remote's: %w", name, provider.ErrNotFound)
	}
	st := provider.Status{Restarts: c.RestartCount, Address: p.address(c)}
	st.Since, _ = time.Parse(time.RFC3339Nano, c.State.StartedAt)
	st.State, st.Message = mapState(c)
	if st.State == provider.StateRunning && check != nil {
		if spec, ok := healthSpec(c); ok {
			ip, _, _ := net.SplitHostPort(st.Address)
			spec.Address = net.JoinHostPort(ip, portOf(spec.Address))
			if err := check(ctx, spec); err != nil {
				st.State, st.Message = provider.StateDegraded, err.Error()
			}
		}
	}
	return st, nil
}

// Owns reports whether the engine holds instanceID's container for this
// remote: the cheap question an embedding provider asks each of its
// engines to find where an instance lives. A container of that name that
// another remote or no bpm owns is not ours.
func (p *Provider) Owns(ctx context.Context, instanceID string) (bool, error) {
	name, err := p.nameOf(provider.Ref{InstanceID: instanceID})
	if err != nil {
		return false, err
	}
	c, err := p.cli.containerInspect(ctx, name)
	if isStatus(err, http.StatusNotFound) {
		return false, nil
	}
	if err != nil {
		return false, p.wrap("inspect "+name, err)
	}
	return c.Config.Labels[labelInstance] == instanceID && c.Config.Labels[labelRemote] == p.remote, nil
}

// HasGateway reports whether this remote's gateway container exists on the
// engine (running or not). An embedding provider that spreads a remote over
// several engines keeps one gateway for it and asks each engine whether it
// is the one.
func (p *Provider) HasGateway(ctx context.Context) (bool, error) {
	name := p.gatewayName()
	c, err := p.cli.containerInspect(ctx, name)
	if isStatus(err, http.StatusNotFound) {
		return false, nil
	}
	if err != nil {
		return false, p.wrap("inspect "+name, err)
	}
	return c.Config.Labels[labelRemote] == p.remote && c.Config.Labels[labelRole] == "gateway", nil
}

// RemoveGateway removes this remote's gateway container from the engine,
// leaving its instances alone. Two gateways holding one WireGuard key take
// the hub's session from each other, so an embedding provider that moved
// the gateway to another engine removes the old one.
func (p *Provider) RemoveGateway(ctx context.Context) error {
	ok, err := p.HasGateway(ctx)
	if err != nil || !ok {
		return err
	}
	name := p.gatewayName()
	if err := p.cli.containerRemove(ctx, name); err != nil && !isStatus(err, http.StatusNotFound) {
		return p.wrap("remove gateway "+name, err)
	}
	return nil
}
