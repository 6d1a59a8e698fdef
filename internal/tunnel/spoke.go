package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// SpokeConfig configures a gateway's WireGuard device.
type SpokeConfig struct {
	PrivateKey PrivateKey
	// Address is the gateway's tunnel address.
	Address netip.Addr
	// HubPublicKey and HubEndpoint (host:port) name the hub; the spoke
	// only ever dials out to it.
	HubPublicKey PublicKey
	HubEndpoint  string
	// HubAddress is the hub's tunnel address, used for the liveness probe;
	// zero disables the probe.
	HubAddress netip.Addr
	// Keepalive is the persistent keepalive; 0 means DefaultKeepalive.
	Keepalive time.Duration
	// ProbeInterval is how often the spoke sends a probe to the hub; 0
	// means 5 s. See Spoke for why.
	ProbeInterval time.Duration
	MTU           int
	Logger        *slog.Logger
}

// Spoke is the gateway's end of the tunnel: one device with one peer, the
// hub, reachable at 0.0.0.0/0 and ::/0 (a spoke talks to nothing else).
//
// The spoke sets the hub's endpoint and a persistent keepalive, so after a
// restart of either side the spoke's keepalive reaches the hub and a new
// handshake follows. One case needs more: after a hub restart the spoke
// still holds a session the new hub does not know, and keepalives alone
// never make WireGuard doubt a session. So the spoke also sends a small
// probe (a TCP SYN to the hub's tunnel address, answered by the hub's stack
// with a reset) every ProbeInterval: unlike keepalives, probes are data, and
// WireGuard re-handshakes by itself when data goes unanswered for 15 s.
type Spoke struct {
	d         *wgDevice
	cfg       SpokeConfig
	log       *slog.Logger
	cancel    context.CancelFunc
	done      chan struct{}
	lastProbe atomic.Int64 // unix nanos of the last answered probe
}

// NewSpoke starts the spoke's device and its hub peer.
func NewSpoke(ctx context.Context, cfg SpokeConfig) (*Spoke, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.HubPublicKey.IsZero() {
		return nil, errors.New("tunnel: spoke: hub public key is not set")
	}
	if cfg.HubEndpoint == "" {
		return nil, errors.New("tunnel: spoke: hub endpoint is not set")
	}
	ep, err := resolveEndpoint(ctx, cfg.HubEndpoint)
	if err != nil {
		return nil, fmt.Errorf("tunnel: spoke: hub %w", err)
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 5 * time.Second
	}
	d, err := newDevice(cfg.PrivateKey, cfg.Address, cfg.MTU, 0, log)
	if err != nil {
		return nil, fmt.Errorf("tunnel: spoke: %w", err)
	}
	conf := fmt.Sprintf("public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		cfg.HubPublicKey.hex(), ep, int(cfg.Keepalive/time.Second))
	if err := d.dev.IpcSet(conf); err != nil {
		d.close()
		return nil, fmt.Errorf("tunnel: spoke: configure hub peer: %w", err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	s := &Spoke{d: d, cfg: cfg, log: log, cancel: cancel, done: make(chan struct{})}
	go s.probeLoop(pctx)
	log.Info("tunnel spoke up", "address", cfg.Address, "hub", ep, "public_key", cfg.PrivateKey.Public())
	return s, nil
}

// Address returns the spoke's tunnel address.
func (s *Spoke) Address() netip.Addr { return s.d.addr }

// PublicKey returns the spoke's public key.
func (s *Spoke) PublicKey() PublicKey { return s.cfg.PrivateKey.Public() }

// Listen listens for TCP connections from the hub on port of the spoke's
// tunnel address.
func (s *Spoke) Listen(port uint16) (net.Listener, error) {
	l, err := s.d.net.listenTCP(netip.AddrPortFrom(s.d.addr, port))
	if err != nil {
		return nil, fmt.Errorf("tunnel: spoke: listen on %s:%d: %w", s.d.addr, port, err)
	}
	return l, nil
}

// DialTunnel connects to addr inside the tunnel (the hub's side).
func (s *Spoke) DialTunnel(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.d.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", addr, err)
	}
	return c, nil
}

// HubStats returns the hub peer's counters.
func (s *Spoke) HubStats() (PeerStats, error) {
	st, err := s.d.peerStates()
	if err != nil {
		return PeerStats{}, fmt.Errorf("tunnel: spoke stats: %w", err)
	}
	if len(st) != 1 {
		return PeerStats{}, fmt.Errorf("tunnel: spoke stats: %d peers on the device, want 1", len(st))
	}
	st[0].Name = "hub"
	st[0].Address = s.cfg.HubAddress
	return st[0], nil
}

// LastProbe returns when the hub last answered a probe (zero if never).
func (s *Spoke) LastProbe() time.Time {
	n := s.lastProbe.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (s *Spoke) probeLoop(ctx context.Context) {
	defer close(s.done)
	if !s.cfg.HubAddress.IsValid() {
		return
	}
	// Port 1 on the hub has no listener: a reset is the answer we want.
	target := netip.AddrPortFrom(s.cfg.HubAddress, 1)
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeInterval)
		c, err := s.d.net.dialTCP(pctx, target)
		cancel()
		if c != nil {
			c.Close()
		}
		if err == nil || isRefused(err) {
			s.lastProbe.Store(time.Now().UnixNano())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// isRefused reports whether err is the hub's stack refusing the probe.
func isRefused(err error) bool {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// Close stops the probe and the device.
func (s *Spoke) Close() error {
	s.cancel()
	<-s.done
	s.d.close()
	return nil
}
