package tunnel

import (
	"context"
	"net"
	"net/netip"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// netStack is the userspace TCP/IP stack behind a device: the device's
// "interface", holding the tunnel address.
type netStack struct {
	tun tun.Device
	n   *netstack.Net
}

func newNetStack(addr netip.Addr, mtu int) (*netStack, error) {
	t, n, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, mtu)
	if err != nil {
		return nil, err
	}
	return &netStack{tun: t, n: n}, nil
}

func (s *netStack) dialTCP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	c, err := s.n.DialContextTCPAddrPort(ctx, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *netStack) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	l, err := s.n.ListenTCPAddrPort(ap)
	if err != nil {
		return nil, err
	}
	return l, nil
}
