package manager

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// Remote instances' bridges: the tunnel transport.
//
// A remote provider that implements BridgeSocketPath (the same optional
// interface as the local provider's) names where, on the remote's host,
// the instance's bridge endpoint lives; the instance gets it as
// BRIDGE_SOCKET_PATH. The manager then
//
//  1. serves the instance's bridge (pinned to its service id, Transport
//     tunnel, Gateway the remote's name) on its share of the hub's
//     bridge.TunnelMux on tunnel.BridgePort, which admits only connections
//     relayed by that remote's gateway;
//  2. tells the gateway, over its control channel, to serve that endpoint
//     and relay it to the hub (gateway.Client.ExposeBridge), again every
//     exposeRefresh, so a restarted gateway gets its endpoints back without
//     anyone noticing it restarted;
//  3. on terminate, stops the bridge (which deletes the record it pinned,
//     so the proxy answers 404) and tells the gateway to close the endpoint.
//
// The record the service registers routes the proxy through hub.Via(remote)
// to the upstream URL it gave, an address inside the remote.
//
// As upstream does for remote deployments, nothing waits for the bridge: a
// service that never dials it works without one, and a gateway that is not
// up yet gets told once it is.
//
// Relaying providers (bridgeRelayer: Kubernetes, where the gateway is its
// own pod and cannot share a unix socket with an instance's) put a sidecar
// in the instance's pod that serves BRIDGE_SOCKET_PATH and relays to the
// gateway's relay port over the cluster network (gateway/bridgerelay.go).
// There a socket's file permissions cannot say who is calling, so each
// instance gets a secret token: the manager passes it to the provider in
// the deploy's env (gateway.EnvRelayToken), which must put it only in a
// secret the sidecar reads, and registers it with the gateway in place of
// a socket path. The gateway admits a relay connection for instance X only
// with X's token; the hub still admits only the gateway that carries X.
//
// The token is derived, not stored: HMAC-SHA256 keyed by one secret kept in
// the keystore (relayKeyName), over the instance id. Why not a random token
// per instance in the keystore: the gateway forgets its endpoints when it
// restarts and the manager re-exposes them (exposeLoop, syncRemoteBridges
// after a manager restart), so the token must be recoverable; deriving it
// writes nothing per instance (no entry to create before the intent row,
// to delete at terminate, or to leak when a terminate is cut short),
// gives a re-deploy the same Secret (no pod roll), and keeps nothing in
// clear text anywhere but the instance's own secret. Instance ids are
// random and never reused, so no two instances share a token. Deleting
// the keystore entry rotates every token; running instances then need a
// re-deploy to reach their bridge.

// exposeRefresh is how often a remote bridge's endpoint is asserted again
// at its gateway: the bound on how long a restarted gateway serves none.
const exposeRefresh = 30 * time.Second

// exposeWait is how long a deploy waits for the gateway to serve the
// endpoint before starting the instance, which dials it first thing.
const exposeWait = 10 * time.Second

// remoteBridgeState is the hub's bridge mux, started with the first remote
// bridge (the hub itself is lazy too).
type remoteBridgeState struct {
	mu  sync.Mutex
	hub *tunnel.Hub
	mux *bridge.TunnelMux
	// relayKey keys the relay tokens (remoteRelayToken), read from the
	// keystore once.
	relayKey []byte
}

// bridgeRelayer is a remote provider whose instances reach the gateway's
// relay port through a sidecar instead of sharing a socket with it. It gets
// the instance's relay token in DeployRequest.Env[gateway.EnvRelayToken].
type bridgeRelayer interface {
	BridgeRelay() bool
}

// relayKeyName is the keystore entry keying the relay tokens.
const relayKeyName = "bpm-bridge-relay-key"

// relayTokenLabel separates relay tokens from any other use of the key.
const relayTokenLabel = "bpm bridge relay token v1\x00"

// remoteRelayToken returns instance id's relay token when p relays, and
// sets it in env for the provider; "" when p does not relay.
func (m *Manager) remoteRelayToken(p provider.Provider, id string, env map[string]string) (string, error) {
	if r, ok := p.(bridgeRelayer); !ok || !r.BridgeRelay() {
		return "", nil
	}
	key, err := m.relayKey()
	if err != nil {
		return "", fmt.Errorf("bridge relay token: %w", err)
	}
	tok := relayToken(key, id)
	if env != nil {
		env[gateway.EnvRelayToken] = tok
	}
	return tok, nil
}

// relayToken derives instance id's token from key.
func relayToken(key []byte, id string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(relayTokenLabel))
	mac.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// relayKey returns the relay token key, generating and storing it in the
// keystore on first use. Cached: the keystore is opened once anyway.
func (m *Manager) relayKey() ([]byte, error) {
	m.rbridges.mu.Lock()
	key := m.rbridges.relayKey
	m.rbridges.mu.Unlock()
	if key != nil {
		return key, nil
	}
	m.hubs.mu.Lock()
	defer m.hubs.mu.Unlock()
	ks, err := m.keystoreLocked()
	if err != nil {
		return nil, err
	}
	v, err := ks.Get(relayKeyName)
	switch {
	case err == nil:
		if key, err = base64.StdEncoding.DecodeString(v); err != nil || len(key) < 32 {
			return nil, fmt.Errorf("keystore entry %s: want 32 or more base64 bytes", relayKeyName)
		}
	case errors.Is(err, keystore.ErrNotFound):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := ks.Set(relayKeyName, base64.StdEncoding.EncodeToString(key)); err != nil {
			return nil, fmt.Errorf("store keystore entry %s: %w", relayKeyName, err)
		}
	default:
		return nil, fmt.Errorf("keystore entry %s: %w", relayKeyName, err)
	}
	m.rbridges.mu.Lock()
	m.rbridges.relayKey = key
	m.rbridges.mu.Unlock()
	return key, nil
}

// siteBridgeSocketer is BridgeSocketPath for a Sited provider whose path
// depends on the site (an SSH host's home directory).
type siteBridgeSocketer interface {
	SiteBridgeSocketPath(site string, blueprintID, serviceID uint64) string
}

// remoteBridgePath is where remote instance (bid, sid) at site dials its
// bridge on its own host, or "" when p has no bridge convention.
func remoteBridgePath(p provider.Provider, site string, bid, sid uint64) string {
	if sb, ok := p.(siteBridgeSocketer); ok {
		return sb.SiteBridgeSocketPath(site, bid, sid)
	}
	bs, ok := p.(bridgeSocketer)
	if !ok {
		return ""
	}
	return bs.BridgeSocketPath(bid, sid)
}

// tunnelMux returns the running hub's bridge mux, starting it on first use
// (or after the hub was replaced).
func (m *Manager) tunnelMux() (*bridge.TunnelMux, error) {
	h := m.runningHub()
	if h == nil {
		return nil, fmt.Errorf("bridge: tunnel: the hub is not running: %w", provider.ErrUnavailable)
	}
	m.rbridges.mu.Lock()
	defer m.rbridges.mu.Unlock()
	if m.rbridges.mux != nil && m.rbridges.hub == h {
		return m.rbridges.mux, nil
	}
	if m.rbridges.mux != nil {
		m.rbridges.mux.Close()
	}
	ln, err := h.Listen(tunnel.BridgePort)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	mux := bridge.NewTunnelMux(ln, func(a netip.Addr) (string, bool) {
		p, ok := h.PeerByAddress(a)
		return p.Name, ok
	}, m.log.With("component", "bridge-relay"))
	go mux.Serve()
	m.rbridges.hub, m.rbridges.mux = h, mux
	return mux, nil
}

// closeTunnelMux stops the mux (manager shutdown, before the hub closes).
func (m *Manager) closeTunnelMux() {
	m.rbridges.mu.Lock()
	defer m.rbridges.mu.Unlock()
	if m.rbridges.mux != nil {
		m.rbridges.mux.Close()
		m.rbridges.mux, m.rbridges.hub = nil, nil
	}
}

// remoteCheck runs spec's health check from inside remote (a peer name:
// the remote, or one of its sites), through its gateway: instance
// addresses are on the remote's private network. With no
// hub or no peer for the remote yet (a manager just started, before its
// first reconcile of peers) it checks from here, which works where this
// machine routes to that network and otherwise fails as before.
func (m *Manager) remoteCheck(ctx context.Context, remote string, spec health.Spec) error {
	c, err := m.gatewayClient(remote)
	if err != nil {
		return health.Check(ctx, spec)
	}
	defer c.CloseIdleConnections()
	res, err := c.InstanceHealth(ctx, spec)
	if err != nil {
		return fmt.Errorf("health check through the %s gateway: %w", remote, err)
	}
	if !res.Healthy {
		return errors.New(res.Error)
	}
	return nil
}

// gatewayClient returns a control channel client for remote's gateway.
func (m *Manager) gatewayClient(remote string) (*gateway.Client, error) {
	h := m.runningHub()
	if h == nil {
		return nil, fmt.Errorf("gateway %s: the hub is not running: %w", remote, provider.ErrUnavailable)
	}
	p, ok := h.Peer(remote)
	if !ok {
		return nil, fmt.Errorf("gateway %s: no tunnel peer: %w", remote, provider.ErrUnavailable)
	}
	return gateway.NewClient(h.DialTunnel, p.Address), nil
}

// startRemoteBridge serves remote instance id's bridge through the tunnel
// and has the gateway expose it at path on the remote, or, with a relay
// token, admit the instance's relay sidecar with it (the sidecar serves
// path). It returns once the gateway serves the endpoint, or after wait
// with the exposing left to the background. Starting a bridge the instance
// has is a no-op.
func (m *Manager) startRemoteBridge(ctx context.Context, id, remote string, sid uint64, path, token string, wait time.Duration) error {
	m.bridges.mu.Lock()
	_, ok := m.bridges.m[id]
	m.bridges.mu.Unlock()
	if ok {
		return nil
	}
	mux, err := m.tunnelMux()
	if err != nil {
		return err
	}
	log := m.log.With("instance", id, "remote", remote, "component", "bridge")
	want := sid
	srv, err := bridge.New(bridge.Config{
		Registry:          m.registry,
		Logger:            log,
		ExpectedServiceID: &want,
		Transport:         registry.TransportTunnel,
		Gateway:           remote,
		InstanceID:        id,
		// The service binds on the remote's host, so the gateway probes.
		RequestPort: func(ctx context.Context, preferred uint16) (uint16, error) {
			c, err := m.gatewayClient(remote)
			if err != nil {
				return 0, err
			}
			return c.RequestPort(ctx, preferred)
		},
		OnFirstPing: func() {
			ectx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.store.AppendEvent(ectx, id, "bridge", "the service pinged its bridge through the "+remote+" gateway")
		},
		Upstream: func(ctx context.Context, upstream string) (string, error) {
			return m.remoteUpstream(ctx, id, remote, upstream)
		},
	})
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	ln, err := mux.Listener(id, remote)
	if err != nil {
		return err
	}
	tr := &bridge.Tunnel{Listener: ln}
	bctx, cancel := context.WithCancel(context.Background())
	exposed := make(chan struct{})
	b := &instBridge{srv: srv, path: "tunnel:" + remote + ":" + path, cancel: cancel, done: make(chan struct{}),
		onStop: func(ctx context.Context, keep bool) {
			if !keep {
				m.unexposeRemoteBridge(ctx, remote, id)
			}
		}}
	go func() {
		defer close(b.done)
		var wg sync.WaitGroup
		wg.Add(1)
		ep := gateway.BridgeEndpoint{InstanceID: id, Listen: path}
		if token != "" {
			ep = gateway.BridgeEndpoint{InstanceID: id, Token: token}
		}
		go func() { defer wg.Done(); m.exposeLoop(bctx, log, remote, ep, exposed) }()
		if err := srv.ServeTransport(bctx, tr); err != nil {
			log.Warn("bridge stopped", "err", err)
		}
		ln.Close()
		cancel()
		wg.Wait()
	}()
	m.bridges.mu.Lock()
	if m.bridges.m == nil {
		m.bridges.m = map[string]*instBridge{}
	}
	m.bridges.m[id] = b
	m.bridges.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	select {
	case <-exposed:
	case <-time.After(wait):
		m.store.AppendEvent(ctx, id, "bridge", "the "+remote+" gateway does not serve the bridge endpoint yet; it is told again until it does")
	case <-ctx.Done():
	}
	return nil
}

// upstreamWait bounds how long a registration waits for its instance's
// address: a service registers as soon as it starts, which can be before
// the deploy has recorded where the container or pod answers.
const upstreamWait = 10 * time.Second

// remoteUpstream maps the upstream URL remote instance id registered to
// one its gateway can reach. Services written for one machine register
// http://127.0.0.1:PORT (or a wildcard host); inside a container or pod
// that loopback is the instance's own, so the host becomes the one in the
// address the provider reports for the instance, and the port stays the
// service's. A URL naming any other host is the service's word and kept.
// For SSH hosts the reported address is already loopback, so nothing
// changes there.
func (m *Manager) remoteUpstream(ctx context.Context, id, remote, upstream string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return upstream, nil // the proxy reports a URL it cannot use
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]"))
	if err != nil && u.Hostname() != "localhost" {
		return upstream, nil // a name: the service's word
	}
	if err == nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		return upstream, nil
	}
	ctx, cancel := context.WithTimeout(ctx, upstreamWait)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, time.Second) {
		host, err := m.instanceHost(ctx, id, remote)
		if err != nil {
			return "", err
		}
		if host != "" {
			if port := u.Port(); port != "" {
				u.Host = net.JoinHostPort(host, port)
			} else {
				u.Host = net.JoinHostPort(host, "80")
			}
			return u.String(), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("instance %s has no address on remote %s yet", id, remote)
		case <-time.After(wait):
		}
	}
}

// instanceHost is the host part of where remote instance id answers: the
// recorded address, else what its provider reports now ("" when neither
// knows yet).
func (m *Manager) instanceHost(ctx context.Context, id, remote string) (string, error) {
	in, err := m.store.GetInstance(ctx, id)
	if err != nil {
		return "", err
	}
	addr := in.Address
	if addr == "" {
		p, err := m.providerFor(ctx, in.Remote)
		if err != nil {
			return "", err
		}
		// Names derive from the instance id alone, so a provider finds the
		// instance before its handle is recorded.
		st, err := p.Status(ctx, provider.Ref{InstanceID: id, Remote: in.Remote, Handle: in.Handle})
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return "", err
		}
		addr = st.Address
	}
	if addr == "" {
		return "", nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("instance %s: address %q: %w", id, addr, err)
	}
	return host, nil
}

// exposeLoop tells remote's gateway to serve the endpoint until ctx ends:
// quickly until it first succeeds (closing exposed), then every
// exposeRefresh. POST is idempotent, so repeating it costs one small
// request and heals a gateway restart.
func (m *Manager) exposeLoop(ctx context.Context, log *slog.Logger, remote string, ep gateway.BridgeEndpoint, exposed chan struct{}) {
	wait, failed := 250*time.Millisecond, false
	for {
		err := m.exposeRemoteBridge(ctx, remote, ep)
		switch {
		case err == nil:
			if exposed != nil {
				close(exposed)
				exposed = nil
			}
			wait, failed = exposeRefresh, false
		case ctx.Err() != nil:
			return
		default:
			if !failed {
				log.Warn("bridge endpoint not served by the gateway yet", "err", err)
			}
			failed = true
			wait = min(max(wait*2, time.Second), exposeRefresh)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// exposeRemoteBridge sends ep to remote's gateway. The endpoint may carry
// the instance's relay token: it goes only into the request body, over the
// tunnel, and no error here quotes the body.
func (m *Manager) exposeRemoteBridge(ctx context.Context, remote string, ep gateway.BridgeEndpoint) error {
	c, err := m.gatewayClient(remote)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = c.ExposeBridge(cctx, ep)
	return err
}

// unexposeRemoteBridge closes the endpoint at the gateway. The instance is
// gone either way; a gateway that cannot be told relays to a bridge that no
// longer admits the id, so a failure is only worth a warning.
func (m *Manager) unexposeRemoteBridge(ctx context.Context, remote, id string) {
	c, err := m.gatewayClient(remote)
	if err == nil {
		defer c.CloseIdleConnections()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err = c.UnexposeBridge(cctx, id)
	}
	if err != nil {
		m.log.Warn("bridge endpoint not closed at the gateway", "instance", id, "remote", remote, "err", err)
	}
}

// syncRemoteBridges gives every live remote instance its bridge: after a
// manager restart, so its service can reconnect and register again, and
// every exposeRefresh from the health loop, for one that could not get it
// then (the hub not up yet, its host unreachable).
func (m *Manager) syncRemoteBridges(ctx context.Context) {
	if m.runningHub() == nil {
		return
	}
	missing := m.cache.ids(func(in state.Instance) bool { return in.Remote != LocalRemote && bridgeable(in) })
	for _, id := range missing {
		m.bridges.mu.Lock()
		_, has := m.bridges.m[id]
		m.bridges.mu.Unlock()
		if !has { // the usual case costs one map lookup, not a lock and a read
			m.syncRemoteBridge(ctx, id)
		}
	}
}

// bridgeable: a remote instance that runs (or may, once started) and whose
// deploy recorded its handle.
func bridgeable(in state.Instance) bool {
	return len(in.Handle) > 0 && !in.State.Final() && in.State != provider.StateFailed && in.State != provider.StateTerminating
}

// syncRemoteBridge gives instance id its bridge unless it has one. It
// holds the instance's lock and reads its row again, so a terminate in
// between is never undone by a bridge started after it.
func (m *Manager) syncRemoteBridge(ctx context.Context, id string) {
	unlock := m.lockInstance(id)
	defer unlock()
	in, err := m.store.GetInstance(ctx, id)
	if err != nil || !bridgeable(in) {
		return
	}
	p, err := m.providerFor(ctx, in.Remote)
	if err != nil {
		return
	}
	path := remoteBridgePath(p, in.Site, in.BlueprintID, in.ServiceID)
	if path == "" {
		return
	}
	// The same token the deploy gave the instance's secret: derived
	// again, not stored.
	token, err := m.remoteRelayToken(p, in.ID, nil)
	if err != nil {
		m.log.Warn("remote bridge not restored", "instance", in.ID, "err", err)
		return
	}
	// No wait: the instances are running already, and a gateway that is
	// not back yet must not hold up the manager's start.
	if err := m.startRemoteBridge(ctx, in.ID, provider.PeerName(in.Remote, in.Site), in.ServiceID, path, token, 0); err != nil {
		m.log.Warn("remote bridge not restored", "instance", in.ID, "err", err)
	}
}
