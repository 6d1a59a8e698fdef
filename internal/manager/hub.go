package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/config"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/keystore"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// Keystore holds the hub's and the remotes' WireGuard private keys,
// encrypted at rest. *keystore.Keystore satisfies it.
type Keystore interface {
	Get(name string) (string, error)
	Set(name, value string) error
}

// Keystore entry names and meta keys of the hub.
const (
	hubKeyName = "bpm-hub-key"
	// exportedMetaKey lists the remotes an operator exported by hand (JSON
	// array of names). They keep their peer with no instance behind it: a
	// hand-joined WireGuard peer has nothing bpm could count.
	exportedMetaKey = "tunnel.exported"
)

func remoteKeyName(remote string) string { return "bpm-remote-" + remote + "-key" }

// healthTimeout bounds one gateway /healthz check in tunnel status; a
// gateway that cannot answer in this long counts as unreachable.
const healthTimeout = 2 * time.Second

// hubState is the manager's WireGuard hub. It starts lazily, the first time
// a remote needs it, so a local-only operator opens no UDP port and never
// needs the keystore passphrase.
type hubState struct {
	// mu serialises the start and every peer reconcile, so concurrent
	// deploys and terminates apply their SetPeers in a consistent order.
	mu    sync.Mutex
	hub   *tunnel.Hub
	ks    Keystore
	open  func() (Keystore, error)
	alloc *tunnel.Allocator
}

// metaStore adapts the state's meta table to tunnel.Store, for tunnel
// address allocations and the hub's endpoint memory.
type metaStore struct{ s *state.Store }

func (ms metaStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := ms.s.GetMeta(ctx, key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func (ms metaStore) Set(ctx context.Context, key string, value []byte) error {
	return ms.s.SetMeta(ctx, key, value)
}

// keystoreLocked opens the keystore once. Callers hold hubState.mu.
func (m *Manager) keystoreLocked() (Keystore, error) {
	if m.hubs.ks != nil {
		return m.hubs.ks, nil
	}
	if m.hubs.open == nil {
		return nil, fmt.Errorf("the hub's private key is kept in the keystore, and this manager has none: %w", keystore.ErrNoPassphrase)
	}
	ks, err := m.hubs.open()
	if err != nil {
		return nil, fmt.Errorf("open the keystore (it keeps the hub's private key): %w", err)
	}
	m.hubs.ks = ks
	return ks, nil
}

// keyFromKeystore returns the private key stored under name, generating
// and storing one on first use.
func keyFromKeystore(ks Keystore, name string) (tunnel.PrivateKey, error) {
	v, err := ks.Get(name)
	if err == nil {
		k, perr := tunnel.ParsePrivateKey(v)
		if perr != nil {
			return tunnel.PrivateKey{}, fmt.Errorf("keystore entry %s: %w", name, perr)
		}
		return k, nil
	}
	if !errors.Is(err, keystore.ErrNotFound) {
		return tunnel.PrivateKey{}, fmt.Errorf("keystore entry %s: %w", name, err)
	}
	k, err := tunnel.GeneratePrivateKey()
	if err != nil {
		return tunnel.PrivateKey{}, err
	}
	if err := ks.Set(name, k.Reveal()); err != nil {
		return tunnel.PrivateKey{}, fmt.Errorf("store keystore entry %s: %w", name, err)
	}
	return k, nil
}

// startHubLocked starts the hub if it is not running. Callers hold
// hubState.mu.
func (m *Manager) startHubLocked(ctx context.Context) (*tunnel.Hub, error) {
	if m.hubs.hub != nil {
		return m.hubs.hub, nil
	}
	ks, err := m.keystoreLocked()
	if err != nil {
		return nil, fmt.Errorf("tunnel hub: %w", err)
	}
	key, err := keyFromKeystore(ks, hubKeyName)
	if err != nil {
		return nil, fmt.Errorf("tunnel hub: %w", err)
	}
	hc := m.cfg.Hub
	ka := hc.KeepaliveDuration()
	if ka == 0 {
		ka = -1 // "0s" in the config turns keepalives off; tunnel reads 0 as its default
	}
	h, err := tunnel.NewHub(ctx, tunnel.HubConfig{
		PrivateKey: key,
		Address:    m.hubs.alloc.Hub(),
		ListenAddr: hc.Listen,
		Endpoint:   hc.Endpoint,
		MTU:        hc.MTU,
		Keepalive:  ka,
		Store:      metaStore{m.store},
		Logger:     m.log.With("component", "hub"),
	})
	if err != nil {
		return nil, fmt.Errorf("tunnel hub: %w", err)
	}
	m.hubs.hub = h
	return h, nil
}

// runningHub returns the hub, or nil when it has not started.
func (m *Manager) runningHub() *tunnel.Hub {
	m.hubs.mu.Lock()
	defer m.hubs.mu.Unlock()
	return m.hubs.hub
}

// exported returns the remotes exported by hand.
func (m *Manager) exported(ctx context.Context) ([]string, error) {
	b, err := m.store.GetMeta(ctx, exportedMetaKey)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return nil, fmt.Errorf("decode %s: %w", exportedMetaKey, err)
	}
	return names, nil
}

func (m *Manager) markExported(ctx context.Context, remote string) error {
	names, err := m.exported(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(names, remote) {
		return nil
	}
	names = append(names, remote)
	slices.Sort(names)
	b, _ := json.Marshal(names)
	return m.store.SetMeta(ctx, exportedMetaKey, b)
}

// peerRemotes is the declarative peer set: every configured remote with a
// non-terminated instance, plus every remote exported by hand. A remote
// that has instances in state but is no longer configured gets no peer
// (its key settings are gone) and is reported.
func (m *Manager) peerRemotes(ctx context.Context) ([]string, error) {
	want := map[string]bool{}
	for _, in := range m.cache.matching(state.Filter{}) {
		if in.Remote != LocalRemote {
			want[provider.PeerName(in.Remote, in.Site)] = true
		}
	}
	ex, err := m.exported(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range ex {
		want[n] = true
	}
	out := make([]string, 0, len(want))
	for n := range want {
		if remote, _ := provider.SplitPeerName(n); m.cfg.Remotes[remote] == nil {
			m.log.Warn("tunnel: remote has instances or an exported peer but is not configured; it gets no peer", "remote", n)
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// reconcilePeers sets the hub's peers to the desired set. It starts the hub
// when some remote needs it and does nothing while none does and the hub
// is not running (the local-only path).
func (m *Manager) reconcilePeers(ctx context.Context) error {
	m.hubs.mu.Lock()
	defer m.hubs.mu.Unlock()
	// Computed under the lock: two reconciles racing must not apply an
	// older desired set after a newer one.
	names, err := m.peerRemotes(ctx)
	if err != nil {
		return fmt.Errorf("tunnel peers: %w", err)
	}
	if len(names) == 0 && m.hubs.hub == nil {
		return nil
	}
	h, err := m.startHubLocked(ctx)
	if err != nil {
		return err
	}
	peers := make([]tunnel.Peer, 0, len(names))
	for _, n := range names {
		p, err := m.peerLocked(ctx, n)
		if err != nil {
			return fmt.Errorf("tunnel peers: %w", err)
		}
		peers = append(peers, p)
	}
	if err := h.SetPeers(peers); err != nil {
		return err
	}
	return nil
}

// peerLocked builds a peer (a remote, or a remote's site: PeerName),
// allocating its tunnel address and resolving its key on first use.
// Callers hold hubState.mu.
func (m *Manager) peerLocked(ctx context.Context, peer string) (tunnel.Peer, error) {
	addr, err := m.hubs.alloc.Allocate(ctx, peer)
	if err != nil {
		return tunnel.Peer{}, err
	}
	key, err := m.spokeKeyLocked(peer)
	if err != nil {
		return tunnel.Peer{}, err
	}
	return tunnel.Peer{Name: peer, PublicKey: key.Public(), Address: addr}, nil
}

// spokeKeyLocked returns a peer's gateway key: for a remote's only
// gateway the operator's [remote.NAME.tunnel] private_key when set, else
// (and for every site of a Sited remote, which cannot share one key) one
// generated once and kept in the keystore under the peer's name. Callers
// hold hubState.mu.
func (m *Manager) spokeKeyLocked(peer string) (tunnel.PrivateKey, error) {
	remote, site := provider.SplitPeerName(peer)
	rc, ok := m.cfg.Remotes[remote]
	if !ok {
		return tunnel.PrivateKey{}, fmt.Errorf("remote %q: %w in config", remote, provider.ErrNotFound)
	}
	if t, ok := remoteTunnel(rc); ok && t.PrivateKey != "" && site == "" {
		k, err := tunnel.ParsePrivateKey(t.PrivateKey.Reveal())
		if err != nil {
			return tunnel.PrivateKey{}, fmt.Errorf("remote %q: tunnel.private_key: %w", remote, err)
		}
		return k, nil
	}
	ks, err := m.keystoreLocked()
	if err != nil {
		return tunnel.PrivateKey{}, fmt.Errorf("remote %q: %w", remote, err)
	}
	k, err := keyFromKeystore(ks, remoteKeyName(peer))
	if err != nil {
		return tunnel.PrivateKey{}, fmt.Errorf("remote %q: %w", peer, err)
	}
	return k, nil
}

var tunnelType = reflect.TypeFor[config.Tunnel]()

// remoteTunnel finds the [remote.NAME.tunnel] table in a remote's typed
// settings. Every remote provider's config embeds a config.Tunnel field
// (named Tunnel today); looking it up by type keeps the manager free of
// imports of each provider package.
func remoteTunnel(rc *config.Remote) (config.Tunnel, bool) {
	v := reflect.ValueOf(rc.Settings)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return config.Tunnel{}, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return config.Tunnel{}, false
	}
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.IsExported() && f.Type == tunnelType {
			return v.Field(i).Interface().(config.Tunnel), true
		}
	}
	return config.Tunnel{}, false
}

// TunnelStatus describes the hub and its peers, with live counters and each
// gateway's health from its control channel. It starts the hub when some
// remote needs a peer.
func (m *Manager) TunnelStatus(ctx context.Context) (api.TunnelStatus, error) {
	names, err := m.peerRemotes(ctx)
	if err != nil {
		return api.TunnelStatus{}, fmt.Errorf("tunnel status: %w", err)
	}
	if len(names) > 0 {
		if err := m.reconcilePeers(ctx); err != nil {
			return api.TunnelStatus{}, err
		}
	}
	out := api.TunnelStatus{
		Hub: api.TunnelHub{
			Address:  m.hubs.alloc.Hub().String(),
			CIDR:     m.hubs.alloc.Prefix().String(),
			Endpoint: m.cfg.Hub.Endpoint,
		},
		Peers: []api.TunnelPeer{},
	}
	if _, port, err := net.SplitHostPort(m.cfg.Hub.Listen); err == nil {
		out.Hub.ListenPort, _ = strconv.Atoi(port)
	}
	h := m.runningHub()
	if h == nil {
		return out, nil
	}
	out.Hub.Running = true
	out.Hub.PublicKey = h.PublicKey().String()
	out.Hub.Endpoint = h.Endpoint()
	out.Hub.ListenPort = int(h.ListenPort())
	stats, err := h.PeerStats()
	if err != nil {
		return api.TunnelStatus{}, err
	}
	for _, s := range stats {
		if s.Name == "" {
			continue
		}
		p := api.TunnelPeer{
			Remote:    s.Name,
			PublicKey: s.PublicKey.String(),
			Address:   s.Address.String(),
			Endpoint:  s.Endpoint,
			RxBytes:   s.RxBytes,
			TxBytes:   s.TxBytes,
			Health:    "unknown",
		}
		if !s.LastHandshake.IsZero() {
			t := s.LastHandshake
			p.LastHandshake = &t
		} else {
			p.HealthMessage = "no handshake since the hub started"
		}
		out.Peers = append(out.Peers, p)
	}
	m.checkGateways(ctx, h, out.Peers)
	return out, nil
}

// checkGateways asks each peer that has completed a handshake for its
// gateway's /healthz, all at once, each bounded by healthTimeout.
func (m *Manager) checkGateways(ctx context.Context, h *tunnel.Hub, peers []api.TunnelPeer) {
	var wg sync.WaitGroup
	for i := range peers {
		p := &peers[i]
		if p.LastHandshake == nil {
			continue
		}
		st, ok := h.Peer(p.Remote)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := gateway.NewClient(h.DialTunnel, st.Address)
			defer c.CloseIdleConnections()
			cctx, cancel := context.WithTimeout(ctx, healthTimeout)
			defer cancel()
			if _, err := c.Healthz(cctx); err != nil {
				p.Health, p.HealthMessage = "unreachable", err.Error()
				return
			}
			p.Health = "ok"
		}()
	}
	wg.Wait()
}

// TunnelPeerConfig returns remote's wg-quick config, so an operator can
// join a plain WireGuard peer by hand. The remote is recorded as exported
// and keeps its peer with or without instances. The reply holds the
// remote's private key: it is never logged.
func (m *Manager) TunnelPeerConfig(ctx context.Context, remote string) (api.TunnelPeerConfig, error) {
	rc, ok := m.cfg.Remotes[remote]
	if !ok {
		return api.TunnelPeerConfig{}, fmt.Errorf("remote %q: %w in config (configured: %v)", remote, provider.ErrNotFound, m.cfg.RemoteNames())
	}
	// Start the hub before recording the export, so a missing keystore
	// passphrase leaves nothing behind.
	m.hubs.mu.Lock()
	h, err := m.startHubLocked(ctx)
	if err == nil {
		// Under the hub lock, which also serialises this read-modify-write
		// of the exported list between concurrent exports.
		if err = m.markExported(ctx, remote); err != nil {
			err = fmt.Errorf("export peer %s: %w", remote, err)
		}
	}
	m.hubs.mu.Unlock()
	if err != nil {
		return api.TunnelPeerConfig{}, err
	}
	if err := m.reconcilePeers(ctx); err != nil {
		return api.TunnelPeerConfig{}, err
	}
	m.hubs.mu.Lock()
	addr, aerr := m.hubs.alloc.Allocate(ctx, remote)
	key, kerr := m.spokeKeyLocked(remote)
	m.hubs.mu.Unlock()
	if err := errors.Join(aerr, kerr); err != nil {
		return api.TunnelPeerConfig{}, fmt.Errorf("export peer %s: %w", remote, err)
	}
	endpoint := h.Endpoint()
	if t, ok := remoteTunnel(rc); ok && t.Endpoint != "" {
		// The hub as seen from that remote, which the operator said
		// differs from the hub's own endpoint.
		endpoint = t.Endpoint
	}
	ka := m.cfg.Hub.KeepaliveDuration()
	var b strings.Builder
	err = tunnel.ExportPeerConfig(&b, tunnel.PeerConfig{
		Name:         remote,
		PrivateKey:   key,
		Address:      addr,
		HubPublicKey: h.PublicKey(),
		HubEndpoint:  endpoint,
		HubAddress:   h.Address(),
		Keepalive:    ka,
		MTU:          h.MTU(),
	})
	if err != nil {
		return api.TunnelPeerConfig{}, err
	}
	m.log.Info("exported a peer config", "remote", remote, "address", addr)
	return api.TunnelPeerConfig{Remote: remote, Config: b.String()}, nil
}

// DialTunnel connects to addr inside the tunnel: a gateway's tunnel address
// or a service of a hand-joined WireGuard peer. It fails while the hub is
// not running.
func (m *Manager) DialTunnel(ctx context.Context, network, addr string) (net.Conn, error) {
	h := m.runningHub()
	if h == nil {
		return nil, fmt.Errorf("tunnel: dial %s: the hub is not running (no remote needs it yet): %w", addr, provider.ErrUnavailable)
	}
	return h.DialTunnel(ctx, network, addr)
}

// TunnelDialer returns the dialer that reaches addresses inside remote
// through its gateway (for the auth proxy's tunnel transport). It fails
// while the hub is not running.
func (m *Manager) TunnelDialer(remote string) (*tunnel.PeerDialer, error) {
	h := m.runningHub()
	if h == nil {
		return nil, fmt.Errorf("tunnel: no tunnel to %s: the hub is not running: %w", remote, provider.ErrUnavailable)
	}
	return h.Via(remote), nil
}

func (m *Manager) closeHub() {
	m.closeTunnelMux()
	m.hubs.mu.Lock()
	defer m.hubs.mu.Unlock()
	if m.hubs.hub != nil {
		m.hubs.hub.Close()
		m.hubs.hub = nil
	}
}

// tunnelSpec is what a remote's provider needs to run its gateway: the
// hub's coordinates and the remote's own key and tunnel address (the same
// ones `bpm tunnel export-peer` writes). The hub must be running.
func (m *Manager) tunnelSpec(ctx context.Context, remote, site string) (provider.TunnelSpec, error) {
	m.hubs.mu.Lock()
	defer m.hubs.mu.Unlock()
	peer := provider.PeerName(remote, site)
	h := m.hubs.hub
	if h == nil {
		return provider.TunnelSpec{}, fmt.Errorf("tunnel spec for %s: the hub is not running", peer)
	}
	addr, err := m.hubs.alloc.Allocate(ctx, peer)
	if err != nil {
		return provider.TunnelSpec{}, fmt.Errorf("tunnel spec for %s: %w", peer, err)
	}
	key, err := m.spokeKeyLocked(peer)
	if err != nil {
		return provider.TunnelSpec{}, fmt.Errorf("tunnel spec for %s: %w", peer, err)
	}
	endpoint := h.Endpoint()
	if rc, ok := m.cfg.Remotes[remote]; ok {
		if t, ok := remoteTunnel(rc); ok && t.Endpoint != "" {
			endpoint = t.Endpoint // the hub as that remote sees it
		}
	}
	return provider.TunnelSpec{
		Remote:            remote,
		Site:              site,
		HubEndpoint:       endpoint,
		HubPublicKey:      h.PublicKey().String(),
		HubAddress:        h.Address().String(),
		GatewayAddress:    netip.PrefixFrom(addr, m.hubs.alloc.Prefix().Bits()).String(),
		GatewayPrivateKey: key.Reveal(),
		MTU:               h.MTU(),
		Keepalive:         m.cfg.Hub.KeepaliveDuration(),
	}, nil
}
