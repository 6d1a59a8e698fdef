package bridge

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// TunnelMux is the manager's end of the tunnel transport: it accepts the
// bridge connections gateways relay to the hub's tunnel.BridgePort, reads
// the relay header naming the instance, and hands each connection to that
// instance's bridge listener (see Listener), but only when it came from the
// gateway of the remote the instance runs on. A gateway can therefore reach
// no other remote's instance bridges, even by naming their ids; an unknown
// id and another remote's id get the same refusal, so a gateway cannot
// probe which instances exist elsewhere.
type TunnelMux struct {
	ln     net.Listener
	peerOf func(netip.Addr) (string, bool)
	log    *slog.Logger

	mu   sync.Mutex
	inst map[string]*muxListener
}

// NewTunnelMux returns a mux accepting on ln (the hub's listener on
// tunnel.BridgePort). peerOf names the remote whose gateway has a tunnel
// address (tunnel.Hub.PeerByAddress). Serve starts accepting.
func NewTunnelMux(ln net.Listener, peerOf func(netip.Addr) (string, bool), log *slog.Logger) *TunnelMux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TunnelMux{ln: ln, peerOf: peerOf, log: log, inst: map[string]*muxListener{}}
}

// Serve accepts until the listener is closed (Close, or the hub stopping).
func (x *TunnelMux) Serve() {
	for {
		c, err := x.ln.Accept()
		if err != nil {
			return
		}
		go x.route(c)
	}
}

// Close stops accepting and closes every instance listener.
func (x *TunnelMux) Close() error {
	err := x.ln.Close()
	x.mu.Lock()
	ls := make([]*muxListener, 0, len(x.inst))
	for _, l := range x.inst {
		ls = append(ls, l)
	}
	x.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	return err
}

// refusal is the one answer a refused gateway gets, whatever the reason.
const refusal = "no bridge for this instance through this gateway"

func (x *TunnelMux) route(c net.Conn) {
	// The header arrives with the connection; a peer that sends nothing
	// must not hold a goroutine for long.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	id, err := tunnel.ReadRelayRequest(c)
	if err != nil {
		_ = tunnel.WriteRelayReply(c, tunnel.RelayBadRequest, err.Error())
		c.Close()
		return
	}
	peer, ok := "", false
	if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); perr == nil {
		peer, ok = x.peerOf(ap.Addr())
	}
	x.mu.Lock()
	l := x.inst[id]
	x.mu.Unlock()
	if !ok || l == nil || l.gateway != peer {
		x.log.Warn("bridge relay refused", "instance", id, "from", c.RemoteAddr().String(), "peer", peer)
		_ = tunnel.WriteRelayReply(c, tunnel.RelayForbidden, refusal)
		c.Close()
		return
	}
	if err := tunnel.WriteRelayReply(c, tunnel.RelayOK, ""); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// Listener returns the bridge listener of instanceID, admitting only
// connections relayed by gateway (the remote's name). Closing it removes
// the instance from the mux. One instance has one listener at a time.
func (x *TunnelMux) Listener(instanceID, gateway string) (net.Listener, error) {
	if instanceID == "" || len(instanceID) > 255 || gateway == "" {
		return nil, fmt.Errorf("bridge: tunnel: instance id %q and gateway %q: want both, the id at most 255 bytes", instanceID, gateway)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.inst[instanceID]; ok {
		return nil, fmt.Errorf("bridge: tunnel: instance %s already has a bridge listener", instanceID)
	}
	l := &muxListener{x: x, id: instanceID, gateway: gateway, addr: x.ln.Addr(),
		ch: make(chan net.Conn), done: make(chan struct{})}
	x.inst[instanceID] = l
	return l, nil
}

// muxListener is one instance's share of the mux.
type muxListener struct {
	x       *TunnelMux
	id      string
	gateway string
	addr    net.Addr
	ch      chan net.Conn
	done    chan struct{}
	once    sync.Once
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *muxListener) Close() error {
	l.once.Do(func() {
		l.x.mu.Lock()
		if l.x.inst[l.id] == l {
			delete(l.x.inst, l.id)
		}
		l.x.mu.Unlock()
		close(l.done)
	})
	return nil
}

func (l *muxListener) Addr() net.Addr { return l.addr }

var _ net.Listener = (*muxListener)(nil)
