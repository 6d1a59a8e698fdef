package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// netStack is the userspace TCP/IP stack behind a device: the device's
// "interface", holding the tunnel address. It is wireguard-go's
// tun/netstack reshaped for throughput (that one hands packets over one at
// a time through an unbuffered channel and reports a batch size of 1):
//
//   - Read returns up to batchSize packets per call, so wireguard-go
//     encrypts them as a batch and the UDP bind sends them with one
//     sendmmsg (and UDP GSO where the kernel offers it) instead of one
//     syscall per packet;
//   - outbound packets queue in a buffered channel, so the gVisor sender
//     does not wait for the WireGuard reader to come round;
//   - inbound checksums are not verified: WireGuard's AEAD has already
//     authenticated every byte, so corruption cannot get this far;
//   - TCP buffers are larger than gVisor's defaults, so one stream can keep
//     enough data in flight to fill the link.
type netStack struct {
	tun   *netTUN
	stack *stack.Stack
	addr  netip.Addr
}

const (
	nicID     = 1
	batchSize = 128
	queueLen  = 1024
)

func newNetStack(addr netip.Addr, mtu int) (*netStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		HandleLocal:        true,
	})
	sack := tcpip.TCPSACKEnabled(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &rcv, &snd, &moderate} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return nil, fmt.Errorf("set TCP option %T: %v", opt, err)
		}
	}
	ep := channel.New(queueLen, uint32(mtu), "")
	ep.LinkEPCapabilities |= stack.CapabilityRXChecksumOffload
	t := &netTUN{ep: ep, stack: s, events: make(chan tun.Event, 1), incoming: make(chan *buffer.View, queueLen), mtu: mtu}
	t.notify = ep.AddNotify(t)
	if err := s.CreateNIC(nicID, ep); err != nil {
		return nil, fmt.Errorf("create NIC: %v", err)
	}
	proto := ipv4.ProtocolNumber
	if addr.Is6() {
		proto = ipv6.ProtocolNumber
	}
	if err := s.AddProtocolAddress(nicID, tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(addr.AsSlice()).WithPrefix()}, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("add address %s: %v", addr, err)
	}
	s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	s.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	t.events <- tun.EventUp
	return &netStack{tun: t, stack: s, addr: addr}, nil
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

func (s *netStack) dialTCP(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(ap)
	c, err := gonet.DialContextTCP(ctx, s.stack, fa, proto)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *netStack) listenTCP(ap netip.AddrPort) (net.Listener, error) {
	fa, proto := fullAddr(ap)
	l, err := gonet.ListenTCP(s.stack, fa, proto)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// netTUN is the tun.Device wireguard-go reads from and writes to.
type netTUN struct {
	ep       *channel.Endpoint
	stack    *stack.Stack
	notify   *channel.NotificationHandle
	events   chan tun.Event
	incoming chan *buffer.View
	mtu      int
}

func (t *netTUN) Name() (string, error)    { return "bpm", nil }
func (t *netTUN) File() *os.File           { return nil }
func (t *netTUN) Events() <-chan tun.Event { return t.events }
func (t *netTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *netTUN) BatchSize() int           { return batchSize }

// Read blocks for one packet, then takes whatever else is already queued.
func (t *netTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	v, ok := <-t.incoming
	if !ok {
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sz, err := v.Read(bufs[n][offset:])
		v.Release()
		if err != nil {
			return n, err
		}
		sizes[n] = sz
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case v, ok = <-t.incoming:
			if !ok {
				return n, nil
			}
		default:
			return n, nil
		}
	}
}

// Write hands decrypted packets to the stack.
func (t *netTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		switch pkt[0] >> 4 {
		case 4:
			t.ep.InjectInbound(header.IPv4ProtocolNumber, pkb)
		case 6:
			t.ep.InjectInbound(header.IPv6ProtocolNumber, pkb)
		default:
			pkb.DecRef()
			return 0, syscall.EAFNOSUPPORT
		}
		pkb.DecRef()
	}
	return len(bufs), nil
}

// WriteNotify is called by the channel endpoint when the stack has queued
// an outbound packet.
func (t *netTUN) WriteNotify() {
	pkt := t.ep.Read()
	if pkt == nil {
		return
	}
	v := pkt.ToView()
	pkt.DecRef()
	t.incoming <- v
}

func (t *netTUN) Close() error {
	t.stack.RemoveNIC(nicID)
	t.stack.Close()
	t.ep.RemoveNotify(t.notify)
	t.ep.Close()
	close(t.events)
	close(t.incoming)
	return nil
}
