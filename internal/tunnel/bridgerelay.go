package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// BridgePort is where the hub accepts the Blueprint bridge connections its
// gateways relay for their remote's instances, on the hub's tunnel address.
//
// One port for all instances, with the relay header (see ForwardPort)
// naming the instance id instead of a host:port, rather than one hub port
// per instance: the hub's netstack needs no port allocation that would have
// to survive manager restarts and be told to every gateway again, and the
// one place that accepts these connections checks, for each one, that the
// WireGuard peer it came from is the gateway of the remote that runs the
// named instance. That peer identity is sound because WireGuard's
// cryptokey routing only accepts a packet whose source address is one of
// the sending peer's allowed IPs, and the hub gives each gateway exactly
// its own /32 (or /128): the remote address of an accepted connection names
// the gateway key that sent it.
const BridgePort = 7003

// Listen listens for TCP connections from gateways on port of the hub's
// tunnel address. The remote address of each accepted connection is the
// sending gateway's tunnel address (see BridgePort for why it can be
// trusted); PeerByAddress turns it into the remote's name.
func (h *Hub) Listen(port uint16) (net.Listener, error) {
	l, err := h.d.net.listenTCP(netip.AddrPortFrom(h.d.addr, port))
	if err != nil {
		return nil, fmt.Errorf("tunnel: hub: listen on %s:%d: %w", h.d.addr, port, err)
	}
	return l, nil
}

// PeerByAddress returns the peer whose tunnel address is a.
func (h *Hub) PeerByAddress(a netip.Addr) (Peer, bool) {
	a = a.Unmap()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.byName {
		if p.Address == a {
			return p, true
		}
	}
	return Peer{}, false
}

// DialBridge opens a bridge connection for instanceID to the hub's
// BridgePort: the relay header names the instance, and the hub's answer
// (RelayOK, or RelayForbidden for an instance this gateway does not carry)
// comes back as an error wrapping ErrRelayForbidden. After it returns the
// connection carries the instance's gRPC bridge traffic.
func (s *Spoke) DialBridge(ctx context.Context, instanceID string) (net.Conn, error) {
	if !s.cfg.HubAddress.IsValid() {
		return nil, errors.New("tunnel: dial bridge: the hub's tunnel address is not set")
	}
	c, err := s.d.net.dialTCP(ctx, netip.AddrPortFrom(s.cfg.HubAddress, BridgePort))
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial bridge of %s: reach hub: %w", instanceID, err)
	}
	if err := relayDial(ctx, c, instanceID); err != nil {
		c.Close()
		return nil, fmt.Errorf("tunnel: dial bridge of %s: %w", instanceID, err)
	}
	return c, nil
}
