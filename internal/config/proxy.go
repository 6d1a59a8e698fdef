package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Proxy defaults.
const (
	// DefaultProxyListen is loopback, unlike upstream Blueprint's
	// 0.0.0.0:8276: exposing the proxy beyond this machine should be a
	// deliberate choice, written in the config.
	DefaultProxyListen = "127.0.0.1:8276"
	// DefaultProxyTokenTTL is a token's life when the client does not ask
	// for one (upstream's 900 s).
	DefaultProxyTokenTTL = "15m"
	// MaxProxyTokenTTL is the longest a token may live: upstream's outer
	// PASETO expiry is always issuance + 1 h, so a longer default would
	// only mislead.
	MaxProxyTokenTTL = time.Hour
)

// Proxy is the [proxy] section: the auth proxy the manager runs, the one
// door to every service instance.
type Proxy struct {
	// Listen is the TCP address, host:port. Port 0 picks a free port at
	// start (tests).
	Listen string `toml:"listen"`
	// AllowRawAPIKeys lets proxied requests authenticate with a long-lived
	// API key instead of a token, as upstream does. Off by default.
	AllowRawAPIKeys bool `toml:"allow_raw_api_keys"`
	// TokenTTL is the default life of an exchanged token, a Go duration
	// from 1s to 1h.
	TokenTTL string `toml:"token_ttl"`
}

// TokenTTLDuration returns TokenTTL parsed; the value was validated at load.
func (p Proxy) TokenTTLDuration() time.Duration {
	d, _ := time.ParseDuration(p.TokenTTL)
	return d
}

func (p *Proxy) applyDefaults() {
	if p.Listen == "" {
		p.Listen = DefaultProxyListen
	}
	if p.TokenTTL == "" {
		p.TokenTTL = DefaultProxyTokenTTL
	}
}

// Validate checks the section; field paths are relative to it.
func (p *Proxy) Validate() error {
	var fe FieldErrors
	if err := checkListenAddr(p.Listen); err != nil {
		fe.Add("listen", "%q: %s", p.Listen, err)
	}
	if d, err := time.ParseDuration(p.TokenTTL); err != nil {
		fe.Add("token_ttl", "%q is not a duration (for example 15m)", p.TokenTTL)
	} else if d < time.Second || d > MaxProxyTokenTTL {
		fe.Add("token_ttl", "%q: must be from 1s to 1h (a token never outlives an hour)", p.TokenTTL)
	}
	return fe.Err()
}

// checkListenAddr accepts host:port with an IP address or name and a port in
// 0..65535; an empty host means every address.
func checkListenAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port (for example 127.0.0.1:8276)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number in 0..65535")
	}
	return nil
}
