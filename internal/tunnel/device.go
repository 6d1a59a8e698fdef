package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// DefaultMTU is the tunnel MTU: WireGuard's usual 1420, which fits a 1500
// byte path with an IPv6 outer header.
const DefaultMTU = 1420

// DefaultKeepalive is the persistent keepalive both ends use. 25 s keeps
// common NAT mappings open, and it makes a restarted peer announce itself.
const DefaultKeepalive = 25 * time.Second

// wgDevice is one userspace WireGuard device with its netstack: what the
// hub and the spoke share.
type wgDevice struct {
	dev   *device.Device
	net   *netStack
	addr  netip.Addr
	log   *slog.Logger
	close func()
}

// newDevice starts a WireGuard device whose only interface is a netstack
// holding addr. listenPort 0 picks a free port.
func newDevice(priv PrivateKey, addr netip.Addr, mtu int, listenPort uint16, log *slog.Logger) (*wgDevice, error) {
	if priv.IsZero() {
		return nil, errors.New("private key is not set")
	}
	if !addr.IsValid() {
		return nil, errors.New("tunnel address is not set")
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	ns, err := newNetStack(addr, mtu)
	if err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}
	dev := device.NewDevice(ns.tun, conn.NewStdNetBind(), wgLogger(log))
	conf := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", priv.hex(), listenPort)
	if err := dev.IpcSet(conf); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configure device: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("bring device up: %w", err)
	}
	return &wgDevice{dev: dev, net: ns, addr: addr, log: log, close: dev.Close}, nil
}

// wgLogger sends wireguard-go's chatter to slog: its verbose lines (one per
// handshake and keepalive) at debug, its errors at warn (they are mostly
// transient: a dropped packet, an unreachable endpoint).
func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			log.Warn(fmt.Sprintf(format, args...))
		},
	}
}

// listenPort returns the UDP port the device listens on.
func (d *wgDevice) listenPort() (uint16, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			return uint16(p), err
		}
	}
	return 0, errors.New("device reports no listen port")
}

// dialTCP dials addr inside the tunnel.
func (d *wgDevice) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("network %q is not supported through the tunnel (tcp only)", network)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: want IP:port (names are not resolved inside the tunnel): %w", addr, err)
	}
	return d.net.dialTCP(ctx, ap)
}

// PeerStats is one peer as the device sees it.
type PeerStats struct {
	Name          string         `json:"name"`
	PublicKey     PublicKey      `json:"public_key"`
	Address       netip.Addr     `json:"address"`
	Endpoint      string         `json:"endpoint,omitempty"`
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       uint64         `json:"rx_bytes"`
	TxBytes       uint64         `json:"tx_bytes"`
	Keepalive     time.Duration  `json:"keepalive"`
	AllowedIPs    []netip.Prefix `json:"allowed_ips"`
}

// peerStates parses the device's UAPI get output. It never keeps the
// private_key line.
func (d *wgDevice) peerStates() ([]PeerStats, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("read device state: %w", err)
	}
	var out []PeerStats
	var cur *PeerStats
	var hsSec, hsNsec int64
	flush := func() {
		if cur != nil {
			if hsSec != 0 || hsNsec != 0 {
				cur.LastHandshake = time.Unix(hsSec, hsNsec)
			}
			out = append(out, *cur)
		}
		hsSec, hsNsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if k == "public_key" {
			flush()
			pk, err := publicKeyFromHex(v)
			if err != nil {
				return nil, err
			}
			cur = &PeerStats{PublicKey: pk}
			continue
		}
		if cur == nil {
			continue // device-level lines, including private_key
		}
		switch k {
		case "endpoint":
			cur.Endpoint = v
		case "last_handshake_time_sec":
			hsSec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "persistent_keepalive_interval":
			n, _ := strconv.Atoi(v)
			cur.Keepalive = time.Duration(n) * time.Second
		case "allowed_ip":
			if p, err := netip.ParsePrefix(v); err == nil {
				cur.AllowedIPs = append(cur.AllowedIPs, p)
			}
		}
	}
	flush()
	return out, nil
}

// resolveEndpoint turns host:port into the IP:port form UAPI requires.
func resolveEndpoint(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: want host:port: %w", hostport, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: bad port: %w", hostport, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: resolve: %w", hostport, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("endpoint %q: resolve: no addresses", hostport)
	}
	// Prefer IPv4: the standard bind listens on both, and v4 is what NATs
	// between a remote and the hub handle best.
	best := ips[0]
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			best = ip.Unmap()
			break
		}
	}
	return netip.AddrPortFrom(best, uint16(p)), nil
}
