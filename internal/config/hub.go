package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Hub defaults. They mirror package tunnel's defaults; config does not
// import tunnel because that would pull WireGuard into every command that
// only reads the config file.
const (
	DefaultHubListen    = ":51820"
	DefaultHubCIDR      = "10.77.0.0/16"
	DefaultHubMTU       = 1420
	DefaultHubKeepalive = "25s"
)

// Hub is the [hub] section: the operator's WireGuard endpoint inside the
// manager, which every remote's gateway dials. The manager opens it only
// when a remote needs it, so a local-only operator never listens on UDP.
type Hub struct {
	// Listen is the UDP listen address, ":PORT" or "0.0.0.0:PORT" (or
	// "[::]:PORT"). WireGuard's userspace bind always listens on every
	// address, so a specific host is refused rather than silently widened.
	// Port 0 picks a free port at start (tests).
	Listen string `toml:"listen"`
	// Endpoint is host:port at which gateways reach the hub. The default,
	// 127.0.0.1:<listen port>, only suits gateways on this machine or in
	// network namespaces that can reach it; operators with remotes elsewhere
	// set a public name here.
	Endpoint string `toml:"endpoint"`
	// CIDR is the tunnel network; the hub takes its first host address and
	// each remote one more. The addresses live only in the userspace
	// netstacks, never on a host interface.
	CIDR string `toml:"cidr"`
	// MTU of the tunnel.
	MTU int `toml:"mtu"`
	// Keepalive is the persistent keepalive towards every gateway, a Go
	// duration in whole seconds ("25s"); "0s" turns it off.
	Keepalive string `toml:"keepalive"`
}

// KeepaliveDuration returns Keepalive parsed; the value was validated at
// load, so a parse failure cannot happen for a loaded config.
func (h Hub) KeepaliveDuration() time.Duration {
	d, _ := time.ParseDuration(h.Keepalive)
	return d
}

// Prefix returns CIDR parsed (validated at load).
func (h Hub) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(h.CIDR)
	return p
}

func (h *Hub) applyDefaults() {
	if h.Listen == "" {
		h.Listen = DefaultHubListen
	}
	if h.CIDR == "" {
		h.CIDR = DefaultHubCIDR
	}
	if h.MTU == 0 {
		h.MTU = DefaultHubMTU
	}
	if h.Keepalive == "" {
		h.Keepalive = DefaultHubKeepalive
	}
	// With port 0 the port is only known once the hub listens; the hub then
	// derives the same default itself.
	if h.Endpoint == "" {
		if port, err := hubListenPort(h.Listen); err == nil && port != 0 {
			h.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
	}
}

// Validate checks the section; field paths are relative to it.
func (h *Hub) Validate() error {
	var fe FieldErrors
	if _, err := hubListenPort(h.Listen); err != nil {
		fe.Add("listen", "%q: %s", h.Listen, err)
	}
	if h.Endpoint != "" {
		if err := CheckHostPort(h.Endpoint); err != nil {
			fe.Add("endpoint", "%q: %s (gateways dial it, e.g. hub.example.com:51820)", h.Endpoint, err)
		}
	}
	if p, err := netip.ParsePrefix(h.CIDR); err != nil {
		fe.Add("cidr", "%q is not a CIDR (for example 10.77.0.0/16)", h.CIDR)
	} else if p != p.Masked() {
		fe.Add("cidr", "%q has host bits set; did you mean %s?", h.CIDR, p.Masked())
	} else if free := p.Addr().BitLen() - p.Bits(); free < 2 {
		fe.Add("cidr", "%q is too small: it needs room for the hub and at least one remote (a /%d or larger)", h.CIDR, p.Addr().BitLen()-2)
	}
	if h.MTU < 1280 || h.MTU > 65535 {
		fe.Add("mtu", "%d: must be from 1280 to 65535", h.MTU)
	}
	if d, err := time.ParseDuration(h.Keepalive); err != nil {
		fe.Add("keepalive", "%q is not a duration (for example 25s)", h.Keepalive)
	} else if d < 0 || d > 65535*time.Second {
		fe.Add("keepalive", "%q: must be from 0s (off) to 65535s", h.Keepalive)
	} else if d%time.Second != 0 {
		fe.Add("keepalive", "%q: WireGuard counts keepalives in whole seconds", h.Keepalive)
	}
	return fe.Err()
}

// hubListenPort accepts what package tunnel's hub accepts: an empty or
// unspecified host and a port (0 picks one).
func hubListenPort(s string) (int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return 0, fmt.Errorf("want :PORT (for example :51820)")
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsUnspecified() {
			return 0, fmt.Errorf("the hub listens on every address; write :%s (or 0.0.0.0:%s)", port, port)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port must be a number in 0..65535")
	}
	return n, nil
}
