package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PeerConfig is everything a plain WireGuard peer (wg-quick) needs to join
// the hub as one remote.
type PeerConfig struct {
	// Name is the remote's name; it only appears in a comment.
	Name string
	// PrivateKey is the peer's own key.
	PrivateKey PrivateKey
	// Address is the peer's tunnel address.
	Address netip.Addr
	// HubPublicKey, HubEndpoint and HubAddress describe the hub.
	HubPublicKey PublicKey
	HubEndpoint  string
	HubAddress   netip.Addr
	// Keepalive; 0 means DefaultKeepalive.
	Keepalive time.Duration
	// MTU; 0 means DefaultMTU.
	MTU int
}

// ExportPeerConfig writes c in the wg-quick format. The peer routes only
// the hub's address into the tunnel: the hub reaches the peer's services at
// the peer's tunnel address, and nothing else needs to pass.
func ExportPeerConfig(w io.Writer, c PeerConfig) error {
	var errs []error
	if c.PrivateKey.IsZero() {
		errs = append(errs, errors.New("private key is not set"))
	}
	if !c.Address.IsValid() {
		errs = append(errs, errors.New("address is not set"))
	}
	if c.HubPublicKey.IsZero() {
		errs = append(errs, errors.New("hub public key is not set"))
	}
	if c.HubEndpoint == "" {
		errs = append(errs, errors.New("hub endpoint is not set"))
	}
	if !c.HubAddress.IsValid() {
		errs = append(errs, errors.New("hub address is not set"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tunnel: export peer config: %w", err)
	}
	ka, mtu := c.Keepalive, c.MTU
	if ka == 0 {
		ka = DefaultKeepalive
	}
	if mtu == 0 {
		mtu = DefaultMTU
	}
	var b strings.Builder
	if c.Name != "" {
		fmt.Fprintf(&b, "# bpm tunnel peer for remote %q. Contains a private key: keep it secret.\n", c.Name)
	}
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s\nMTU = %d\n\n", c.PrivateKey.Reveal(), hostPrefix(c.Address), mtu)
	fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = %d\n",
		c.HubPublicKey, c.HubEndpoint, hostPrefix(c.HubAddress), int(ka/time.Second))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("tunnel: export peer config: %w", err)
	}
	return nil
}

// WGQuickConfig is a parsed wg-quick file (the subset bpm writes).
type WGQuickConfig struct {
	PrivateKey PrivateKey
	Addresses  []netip.Prefix
	MTU        int
	Peers      []WGQuickPeer
}

// WGQuickPeer is one [Peer] section.
type WGQuickPeer struct {
	PublicKey  PublicKey
	Endpoint   string
	AllowedIPs []netip.Prefix
	Keepalive  time.Duration
}

// ParseWGQuick parses a wg-quick config strictly: unknown sections or keys,
// repeated keys and bad values are errors naming the line. Keys are matched
// case-insensitively, as wg-quick does.
func ParseWGQuick(r io.Reader) (*WGQuickConfig, error) {
	var c WGQuickConfig
	var section string
	var peer *WGQuickPeer
	seen := map[string]bool{}
	sawInterface := false
	sc := bufio.NewScanner(r)
	line := 0
	fail := func(format string, args ...any) (*WGQuickConfig, error) {
		return nil, fmt.Errorf("tunnel: wg-quick config line %d: %s", line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if strings.HasPrefix(text, "[") {
			switch strings.ToLower(text) {
			case "[interface]":
				if sawInterface {
					return fail("second [Interface] section")
				}
				sawInterface = true
				section = "interface"
			case "[peer]":
				section = "peer"
				c.Peers = append(c.Peers, WGQuickPeer{})
				peer = &c.Peers[len(c.Peers)-1]
			default:
				return fail("unknown section %s", text)
			}
			seen = map[string]bool{}
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return fail("want Key = Value")
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if section == "" {
			return fail("%s outside a section", k)
		}
		if seen[k] {
			return fail("%s set twice in one section", k)
		}
		seen[k] = true
		var err error
		switch section + "." + k {
		case "interface.privatekey":
			c.PrivateKey, err = ParsePrivateKey(v)
		case "interface.address":
			c.Addresses, err = parsePrefixList(v)
		case "interface.mtu":
			c.MTU, err = strconv.Atoi(v)
		case "peer.publickey":
			peer.PublicKey, err = ParsePublicKey(v)
		case "peer.endpoint":
			if !strings.Contains(v, ":") {
				err = errors.New("want host:port")
			}
			peer.Endpoint = v
		case "peer.allowedips":
			peer.AllowedIPs, err = parsePrefixList(v)
		case "peer.persistentkeepalive":
			var n int
			n, err = strconv.Atoi(v)
			peer.Keepalive = time.Duration(n) * time.Second
		default:
			return fail("unknown key %s in [%s]", k, section)
		}
		if err != nil {
			return fail("%s: %v", k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: wg-quick config: %w", err)
	}
	if !sawInterface || c.PrivateKey.IsZero() {
		return nil, errors.New("tunnel: wg-quick config: no [Interface] with a PrivateKey")
	}
	for i, p := range c.Peers {
		if p.PublicKey.IsZero() {
			return nil, fmt.Errorf("tunnel: wg-quick config: peer %d has no PublicKey", i+1)
		}
	}
	return &c, nil
}

func parsePrefixList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
