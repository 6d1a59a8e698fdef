package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// Gateway is a running spoke agent.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	spoke *tunnel.Spoke
	fwd   net.Listener
	ctl   net.Listener
	// relayLn is the bridge relay's TCP listener, nil without one
	// (bridgerelay.go).
	relayLn net.Listener
	srv     *http.Server
	wg      sync.WaitGroup
	// bridges are the per-instance bridge endpoints the manager asked for
	// (bridge.go).
	bridges bridgeSet
	// dialer dials targets on the remote's network, re-checking the allow
	// list on the address actually dialled so a name that resolves to a
	// forbidden address (DNS rebinding included) is refused.
	dialer net.Dialer
}

// Start brings up the tunnel, the forwarder and the control channel.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spoke, err := tunnel.NewSpoke(ctx, tunnel.SpokeConfig{
		PrivateKey:   cfg.PrivateKey,
		Address:      cfg.Address,
		HubPublicKey: cfg.HubPublicKey,
		HubEndpoint:  cfg.HubEndpoint,
		HubAddress:   cfg.HubAddress,
		MTU:          cfg.MTU,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, spoke: spoke}
	g.dialer = net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if !g.cfg.Allowed(ap.Addr()) {
				return fmt.Errorf("%w: %s", errForbidden, ap.Addr())
			}
			return nil
		},
	}
	if g.fwd, err = spoke.Listen(tunnel.ForwardPort); err != nil {
		spoke.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if g.ctl, err = spoke.Listen(tunnel.ControlPort); err != nil {
		g.fwd.Close()
		spoke.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := g.startBridgeRelay(ctx); err != nil {
		g.ctl.Close()
		g.fwd.Close()
		spoke.Close()
		return nil, err
	}
	g.srv = &http.Server{Handler: g.controlHandler(), ReadHeaderTimeout: 10 * time.Second}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.serveForward() }()
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(g.ctl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("gateway: control channel stopped", "err", err)
		}
	}()
	log.Info("gateway up", "address", cfg.Address, "hub", cfg.HubEndpoint, "allow", cfg.Allow)
	return g, nil
}

// Run starts the gateway and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	g, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.Close(sctx)
}

// Spoke returns the gateway's tunnel device.
func (g *Gateway) Spoke() *tunnel.Spoke { return g.spoke }

// Close stops accepting, lets control requests finish until ctx ends, and
// closes the tunnel (which ends relayed connections).
func (g *Gateway) Close(ctx context.Context) error {
	g.fwd.Close()
	if g.relayLn != nil {
		g.relayLn.Close()
	}
	err := g.srv.Shutdown(ctx)
	g.closeBridges()
	g.spoke.Close()
	g.wg.Wait()
	if err != nil {
		return fmt.Errorf("gateway: shut down control channel: %w", err)
	}
	return nil
}

var errForbidden = errors.New("target not in the gateway's allow list")

func (g *Gateway) serveForward() {
	for {
		c, err := g.fwd.Accept()
		if err != nil {
			return
		}
		go g.relay(c)
	}
}

// relay serves one relayed connection.
func (g *Gateway) relay(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	target, err := tunnel.ReadRelayRequest(c)
	if err != nil {
		_ = tunnel.WriteRelayReply(c, tunnel.RelayBadRequest, err.Error())
		return
	}
	up, err := g.dialTarget(target)
	if err != nil {
		st := tunnel.RelayDialFailed
		if errors.Is(err, errForbidden) {
			st = tunnel.RelayForbidden
			g.log.Warn("gateway: refused relay", "target", target, "err", err)
		}
		_ = tunnel.WriteRelayReply(c, st, err.Error())
		return
	}
	defer up.Close()
	if err := tunnel.WriteRelayReply(c, tunnel.RelayOK, ""); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	splice(c, up)
}

// dialTarget dials host:port on the remote's network. A literal IP is
// checked before dialling so the refusal message is precise; names are
// checked by the dialer's Control hook on each resolved address.
func (g *Gateway) dialTarget(target string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !g.cfg.Allowed(ip) {
		return nil, fmt.Errorf("%w: %s", errForbidden, ip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := g.dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return c, nil
}

// copyBufSize is large enough that one copy moves several tunnel packets
// per syscall on the instance side.
const copyBufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways until both directions end, passing half-closes
// on so request/response protocols that shut down writing still work.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		// Hide ReaderFrom/WriterTo: net.TCPConn's fallback would allocate
		// its own small buffer for a non-socket source.
		_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
		if cw, ok := dst.(closeWriter); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
			_ = src.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}
