package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// endpointsKey is the Store key under which the hub remembers where each
// peer was last seen.
const endpointsKey = "tunnel.endpoints"

// HubConfig configures the hub's WireGuard device.
type HubConfig struct {
	// PrivateKey is the hub's key (kept in the keystore by the manager).
	PrivateKey PrivateKey
	// Address is the hub's tunnel address (Allocator.Hub()).
	Address netip.Addr
	// ListenAddr is the UDP listen address, ":PORT" or "0.0.0.0:PORT";
	// port 0 picks a free one (see Hub.ListenPort).
	ListenAddr string
	// Endpoint is host:port at which gateways reach the hub (it appears in
	// their configuration and in exported configs). Empty means
	// 127.0.0.1:<listen port>, which only suits tests.
	Endpoint string
	// MTU of the tunnel; 0 means DefaultMTU.
	MTU int
	// Keepalive is the persistent keepalive towards every peer; 0 means
	// DefaultKeepalive, negative disables it.
	Keepalive time.Duration
	// Store, when set, keeps each peer's last endpoint so that a restarted
	// hub can start the handshake itself instead of waiting for the gateway
	// to notice its session went stale (15 s or more).
	Store Store
	// Logger receives the device's log; nil discards it.
	Logger *slog.Logger
}

// Peer is one remote's gateway as the hub wants it.
type Peer struct {
	// Name is the remote's name; it is how callers pick the peer to dial
	// through.
	Name      string
	PublicKey PublicKey
	// Address is the gateway's tunnel address; the hub routes exactly this
	// /32 (or /128) to the peer.
	Address netip.Addr
	// Endpoint is an optional host:port the hub may send to first. Usually
	// empty: gateways dial out, and the hub learns the endpoint from them.
	Endpoint string
	// Keepalive overrides the hub's persistent keepalive for this peer.
	Keepalive time.Duration
}

// Hub is the operator-side WireGuard endpoint: one userspace device with one
// peer per remote.
type Hub struct {
	d        *wgDevice
	priv     PrivateKey
	cfg      HubConfig
	port     uint16
	log      *slog.Logger
	mu       sync.Mutex // serialises SetPeers; guards byName
	byName   map[string]Peer
	stop     chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
}

// NewHub starts the hub's device. It listens at once; peers come with
// SetPeers.
func NewHub(ctx context.Context, cfg HubConfig) (*Hub, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	port, err := parseListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: hub: %w", err)
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	d, err := newDevice(cfg.PrivateKey, cfg.Address, cfg.MTU, port, log)
	if err != nil {
		return nil, fmt.Errorf("tunnel: hub: %w", err)
	}
	h := &Hub{d: d, priv: cfg.PrivateKey, cfg: cfg, log: log, byName: map[string]Peer{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if h.port, err = d.listenPort(); err != nil {
		d.close()
		return nil, fmt.Errorf("tunnel: hub: %w", err)
	}
	if h.cfg.Endpoint == "" {
		h.cfg.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(h.port)))
	}
	go h.rememberLoop()
	log.Info("tunnel hub up", "address", cfg.Address, "listen_port", h.port, "public_key", h.PublicKey())
	return h, nil
}

// parseListenAddr accepts ":PORT" or a wildcard host. wireguard-go's
// standard bind (with its batched and GSO send paths) always listens on
// every address; rather than silently widening a specific address, reject
// it. WireGuard answers nothing without a valid handshake, so listening
// everywhere exposes no service.
func parseListenAddr(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("listen address is empty (want :PORT, e.g. :51820)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", s, err)
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsUnspecified() {
			return 0, fmt.Errorf("listen address %q: the hub listens on every address; use :%s or 0.0.0.0:%s", s, port, port)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: bad port: %w", s, err)
	}
	return uint16(p), nil
}

// PublicKey returns the hub's public key.
func (h *Hub) PublicKey() PublicKey { return h.priv.Public() }

// Address returns the hub's tunnel address.
func (h *Hub) Address() netip.Addr { return h.d.addr }

// ListenPort returns the UDP port the hub listens on.
func (h *Hub) ListenPort() uint16 { return h.port }

// Endpoint returns host:port at which gateways reach the hub.
func (h *Hub) Endpoint() string { return h.cfg.Endpoint }

// MTU returns the tunnel MTU.
func (h *Hub) MTU() int {
	if h.cfg.MTU == 0 {
		return DefaultMTU
	}
	return h.cfg.MTU
}

// Peers returns the peers last set, sorted by name.
func (h *Hub) Peers() []Peer {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Peer, 0, len(h.byName))
	for _, p := range h.byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Peer returns the peer named name.
func (h *Hub) Peer(name string) (Peer, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.byName[name]
	return p, ok
}

// SetPeers makes desired the hub's complete peer set. It reads the device's
// current peers and sends one UAPI set with only the difference: new peers
// are added, changed ones updated in place (their sessions survive), absent
// ones removed. The device is never torn down, so other peers' traffic
// does not notice. On error nothing of the change is recorded as applied;
// the next call computes the difference again from the device.
func (h *Hub) SetPeers(desired []Peer) error {
	if err := h.validatePeers(desired); err != nil {
		return fmt.Errorf("tunnel: set peers: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	current, err := h.d.peerStates()
	if err != nil {
		return fmt.Errorf("tunnel: set peers: %w", err)
	}
	have := make(map[PublicKey]PeerStats, len(current))
	for _, p := range current {
		have[p.PublicKey] = p
	}
	remembered := h.loadEndpoints()
	want := make(map[PublicKey]bool, len(desired))
	var b strings.Builder
	var added, updated, removed int
	for _, p := range desired {
		want[p.PublicKey] = true
		ka := h.keepalive(p)
		ep := p.Endpoint
		cur, exists := have[p.PublicKey]
		if ep == "" && !exists {
			ep = remembered[p.PublicKey.String()]
		}
		var epAP netip.AddrPort
		if ep != "" {
			ap, err := resolveEndpoint(context.Background(), ep)
			if err != nil {
				return fmt.Errorf("tunnel: set peers: peer %s: %w", p.Name, err)
			}
			epAP = ap
		}
		if exists {
			sameIPs := len(cur.AllowedIPs) == 1 && cur.AllowedIPs[0] == hostPrefix(p.Address)
			sameEP := !epAP.IsValid() || cur.Endpoint == epAP.String()
			if sameIPs && sameEP && cur.Keepalive == ka {
				continue
			}
			fmt.Fprintf(&b, "public_key=%s\nupdate_only=true\n", p.PublicKey.hex())
			updated++
		} else {
			fmt.Fprintf(&b, "public_key=%s\n", p.PublicKey.hex())
			added++
		}
		fmt.Fprintf(&b, "replace_allowed_ips=true\nallowed_ip=%s\n", hostPrefix(p.Address))
		if epAP.IsValid() {
			fmt.Fprintf(&b, "endpoint=%s\n", epAP)
		}
		fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(ka/time.Second))
	}
	for _, p := range current {
		if !want[p.PublicKey] {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", p.PublicKey.hex())
			removed++
		}
	}
	if b.Len() > 0 {
		if err := h.d.dev.IpcSet(b.String()); err != nil {
			return fmt.Errorf("tunnel: set peers: apply: %w", err)
		}
	}
	h.byName = make(map[string]Peer, len(desired))
	for _, p := range desired {
		h.byName[p.Name] = p
	}
	if added+updated+removed > 0 {
		h.log.Info("tunnel peers reconciled", "added", added, "updated", updated, "removed", removed, "total", len(desired))
	}
	return nil
}

func (h *Hub) keepalive(p Peer) time.Duration {
	ka := p.Keepalive
	if ka == 0 {
		ka = h.cfg.Keepalive
	}
	if ka < 0 {
		return 0
	}
	return ka.Truncate(time.Second)
}

func (h *Hub) validatePeers(ps []Peer) error {
	names := map[string]bool{}
	keys := map[PublicKey]string{}
	addrs := map[netip.Addr]string{}
	var errs []error
	for i, p := range ps {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("peer %d: name is empty", i))
			continue
		case names[p.Name]:
			errs = append(errs, fmt.Errorf("peer %s: listed twice", p.Name))
			continue
		}
		names[p.Name] = true
		if p.PublicKey.IsZero() {
			errs = append(errs, fmt.Errorf("peer %s: public key is not set", p.Name))
		} else if other, ok := keys[p.PublicKey]; ok {
			errs = append(errs, fmt.Errorf("peer %s: same public key as peer %s", p.Name, other))
		} else if p.PublicKey.Equal(h.PublicKey()) {
			errs = append(errs, fmt.Errorf("peer %s: public key is the hub's own", p.Name))
		}
		keys[p.PublicKey] = p.Name
		switch {
		case !p.Address.IsValid():
			errs = append(errs, fmt.Errorf("peer %s: tunnel address is not set", p.Name))
		case p.Address == h.Address():
			errs = append(errs, fmt.Errorf("peer %s: tunnel address %s is the hub's own", p.Name, p.Address))
		case addrs[p.Address] != "":
			errs = append(errs, fmt.Errorf("peer %s: tunnel address %s already used by peer %s", p.Name, p.Address, addrs[p.Address]))
		default:
			addrs[p.Address] = p.Name
		}
	}
	return errors.Join(errs...)
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// PeerStats returns every configured peer with the device's live counters,
// sorted by name. Peers on the device that SetPeers did not name (none,
// unless something else configured the device) carry an empty name.
func (h *Hub) PeerStats() ([]PeerStats, error) {
	states, err := h.d.peerStates()
	if err != nil {
		return nil, fmt.Errorf("tunnel: peer stats: %w", err)
	}
	h.mu.Lock()
	byKey := make(map[PublicKey]Peer, len(h.byName))
	for _, p := range h.byName {
		byKey[p.PublicKey] = p
	}
	h.mu.Unlock()
	for i := range states {
		if p, ok := byKey[states[i].PublicKey]; ok {
			states[i].Name = p.Name
			states[i].Address = p.Address
		}
	}
	sort.Slice(states, func(i, j int) bool { return states[i].Name < states[j].Name })
	return states, nil
}

// DialTunnel connects to addr (IP:port) inside the tunnel: a gateway's own
// tunnel address (its control channel) or a hand-joined plain WireGuard
// peer's service.
func (h *Hub) DialTunnel(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := h.d.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", addr, err)
	}
	return c, nil
}

// Via returns a dialer that reaches addresses inside remote name, relayed by
// its gateway. The peer is looked up at each dial, so a dialer stays valid
// across SetPeers calls.
func (h *Hub) Via(name string) *PeerDialer { return &PeerDialer{h: h, name: name} }

// PeerDialer dials through one remote's gateway.
type PeerDialer struct {
	h    *Hub
	name string
}

// DialContext connects to addr (host:port as seen from inside the remote)
// through the gateway. Its signature fits http.Transport.DialContext.
func (pd *PeerDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	p, ok := pd.h.Peer(pd.name)
	if !ok {
		return nil, fmt.Errorf("tunnel: dial %s via %s: no such peer", addr, pd.name)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: dial %s via %s: network %q not supported (tcp only)", addr, pd.name, network)
	}
	c, err := pd.h.d.net.dialTCP(ctx, netip.AddrPortFrom(p.Address, ForwardPort))
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s via %s: reach gateway: %w", addr, pd.name, err)
	}
	if err := relayDial(ctx, c, addr); err != nil {
		c.Close()
		return nil, fmt.Errorf("tunnel: dial %s via %s: %w", addr, pd.name, err)
	}
	return c, nil
}

// Close stops the device and, with a Store, records the peers' last
// endpoints for the next start.
func (h *Hub) Close() error {
	h.once.Do(func() {
		close(h.stop)
		<-h.done
		h.rememberEndpoints()
		h.d.close()
	})
	return h.closeErr
}

// rememberLoop saves learned endpoints now and then, so that even a crashed
// hub (no Close) restarts knowing where its gateways were.
func (h *Hub) rememberLoop() {
	defer close(h.done)
	if h.cfg.Store == nil {
		return
	}
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.rememberEndpoints()
		}
	}
}

func (h *Hub) rememberEndpoints() {
	if h.cfg.Store == nil {
		return
	}
	states, err := h.d.peerStates()
	if err != nil {
		return
	}
	// Keep only peers still configured, so removed remotes do not linger.
	old := h.loadEndpoints()
	m := make(map[string]string, len(states))
	for _, s := range states {
		k := s.PublicKey.String()
		if s.Endpoint != "" {
			m[k] = s.Endpoint
		} else if ep, ok := old[k]; ok {
			m[k] = ep
		}
	}
	if maps.Equal(m, old) {
		return
	}
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.cfg.Store.Set(ctx, endpointsKey, b); err != nil {
		h.log.Warn("tunnel: remember peer endpoints", "err", err)
	}
}

func (h *Hub) loadEndpoints() map[string]string {
	m := map[string]string{}
	if h.cfg.Store == nil {
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, found, err := h.cfg.Store.Get(ctx, endpointsKey)
	if err != nil || !found {
		return m
	}
	_ = json.Unmarshal(b, &m)
	return m
}
