package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// Environment variables that configure the gateway.
const (
	EnvHubEndpoint    = "BPM_GATEWAY_HUB_ENDPOINT"
	EnvHubPublicKey   = "BPM_GATEWAY_HUB_PUBLIC_KEY"
	EnvHubAddress     = "BPM_GATEWAY_HUB_ADDRESS"
	EnvPrivateKey     = "BPM_GATEWAY_PRIVATE_KEY"
	EnvPrivateKeyFile = "BPM_GATEWAY_PRIVATE_KEY_FILE"
	EnvAddress        = "BPM_GATEWAY_ADDRESS"
	EnvAllow          = "BPM_GATEWAY_ALLOW"
	EnvMTU            = "BPM_GATEWAY_MTU"
)

// DefaultAllow is where a gateway forwards when no allow list is given: the
// remote's loopback and private networks, where its instances live. Public
// addresses and link-local ones (169.254.169.254 is the cloud metadata
// service) are excluded on purpose.
var DefaultAllow = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// Config is the gateway's configuration.
type Config struct {
	HubEndpoint  string
	HubPublicKey tunnel.PublicKey
	// HubAddress is the hub's tunnel address (for the liveness probe); by
	// default the first address of Address's prefix.
	HubAddress netip.Addr
	PrivateKey tunnel.PrivateKey
	// Address is the gateway's tunnel address; Prefix, when the address was
	// given as a CIDR, the tunnel network.
	Address netip.Addr
	Prefix  netip.Prefix
	Allow   []netip.Prefix
	MTU     int
	// BridgeListen, when set, is the TCP address of the bridge relay
	// (bridgerelay.go), e.g. ":7004": where instances that cannot share a
	// unix socket with the gateway reach their bridge.
	BridgeListen string
}

// file keys, spelled exactly as accepted in a TOML or JSON config file.
var fileKeys = map[string]string{
	"hub_endpoint":     EnvHubEndpoint,
	"hub_public_key":   EnvHubPublicKey,
	"hub_address":      EnvHubAddress,
	"private_key":      EnvPrivateKey,
	"private_key_file": EnvPrivateKeyFile,
	"address":          EnvAddress,
	"allow":            EnvAllow,
	"mtu":              EnvMTU,
	"bridge_listen":    EnvBridgeListen,
}

// ConfigFromEnv reads the configuration from BPM_GATEWAY_* variables.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	raw := map[string]string{}
	for k, env := range fileKeys {
		if v := getenv(env); v != "" {
			raw[k] = v
		}
	}
	return build(raw, func(k string) string { return fileKeys[k] })
}

// LoadConfigFile reads a TOML or JSON (by the .json extension) config file
// with the keys hub_endpoint, hub_public_key, hub_address, private_key,
// private_key_file, address, allow (a list) and mtu. Unknown keys, wrongly
// cased keys and wrong types are errors.
func LoadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway: read config: %w", err)
	}
	doc := map[string]any{}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return Config{}, fmt.Errorf("gateway: %s: %w", path, err)
		}
	} else if err := toml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("gateway: %s: %w", path, err)
	}
	raw := map[string]string{}
	var errs []error
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := doc[k]
		if _, ok := fileKeys[k]; !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key (known: address, allow, bridge_listen, hub_address, hub_endpoint, hub_public_key, mtu, private_key, private_key_file)", k))
			continue
		}
		switch x := v.(type) {
		case string:
			if k == "allow" {
				errs = append(errs, fmt.Errorf("allow: want a list of CIDRs"))
				continue
			}
			raw[k] = x
		case int64:
			raw[k] = strconv.FormatInt(x, 10)
		case json.Number:
			raw[k] = x.String()
		case []any:
			if k != "allow" {
				errs = append(errs, fmt.Errorf("%s: want a string, got a list", k))
				continue
			}
			var parts []string
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					errs = append(errs, fmt.Errorf("allow[%d]: want a CIDR string", i))
					continue
				}
				parts = append(parts, s)
			}
			raw[k] = strings.Join(parts, ",")
		default:
			errs = append(errs, fmt.Errorf("%s: unsupported value type %T", k, v))
		}
	}
	if raw["mtu"] != "" {
		if _, isStr := doc["mtu"].(string); isStr {
			errs = append(errs, errors.New("mtu: want a number"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("gateway: %s: %w", path, err)
	}
	cfg, err := build(raw, func(k string) string { return k })
	if err != nil {
		return Config{}, fmt.Errorf("gateway: %s: %w", path, err)
	}
	return cfg, nil
}

// build validates raw values, reporting every problem at once under the
// names the user wrote (env variable or file key).
func build(raw map[string]string, name func(string) string) (Config, error) {
	var c Config
	var errs []error
	bad := func(k string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name(k), err)) }
	need := func(k string) string {
		v := strings.TrimSpace(raw[k])
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: required", name(k)))
		}
		return v
	}
	c.HubEndpoint = need("hub_endpoint")
	if v := need("hub_public_key"); v != "" {
		k, err := tunnel.ParsePublicKey(v)
		if err != nil {
			bad("hub_public_key", err)
		}
		c.HubPublicKey = k
	}
	switch pk, pkf := raw["private_key"], raw["private_key_file"]; {
	case pk != "" && pkf != "":
		errs = append(errs, fmt.Errorf("%s and %s: set only one", name("private_key"), name("private_key_file")))
	case pk != "":
		k, err := tunnel.ParsePrivateKey(pk)
		if err != nil {
			bad("private_key", err)
		}
		c.PrivateKey = k
	case pkf != "":
		b, err := os.ReadFile(pkf)
		if err != nil {
			bad("private_key_file", err)
			break
		}
		k, err := tunnel.ParsePrivateKey(string(b))
		if err != nil {
			bad("private_key_file", fmt.Errorf("%s: %w", pkf, err))
		}
		c.PrivateKey = k
	default:
		errs = append(errs, fmt.Errorf("%s or %s: required", name("private_key"), name("private_key_file")))
	}
	if v := need("address"); v != "" {
		if p, err := netip.ParsePrefix(v); err == nil {
			c.Address, c.Prefix = p.Addr(), p.Masked()
		} else if a, err := netip.ParseAddr(v); err == nil {
			c.Address = a
		} else {
			bad("address", fmt.Errorf("%q is neither an IP nor a CIDR (e.g. 10.77.0.2/16)", v))
		}
	}
	if v := raw["hub_address"]; v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			bad("hub_address", err)
		}
		c.HubAddress = a
	} else if c.Prefix.IsValid() && c.Prefix.Bits() < c.Prefix.Addr().BitLen()-1 {
		c.HubAddress = c.Prefix.Addr().Next()
	} else if c.Address.IsValid() {
		// A single-host address (what `bpm tunnel export-peer` writes) says
		// nothing about the hub's; guessing would aim the liveness probe —
		// the thing that re-handshakes after a hub restart — at nothing.
		bad("hub_address", fmt.Errorf("required when address is a single host (%s): use the [Peer] AllowedIPs address of the exported config", v4or6(c.Address)))
	}
	allow := DefaultAllow
	if v := raw["allow"]; v != "" {
		allow = strings.Split(v, ",")
	}
	for _, s := range allow {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad("allow", fmt.Errorf("%q is not a CIDR", s))
				continue
			}
		}
		c.Allow = append(c.Allow, p.Masked())
	}
	if v := raw["mtu"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1280 || n > 65535 {
			bad("mtu", fmt.Errorf("%q: want a number from 1280 to 65535", v))
		}
		c.MTU = n
	}
	if v := strings.TrimSpace(raw["bridge_listen"]); v != "" {
		if err := validRelayListen(v); err != nil {
			bad("bridge_listen", err)
		}
		c.BridgeListen = v
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Allowed reports whether the gateway may forward to ip.
func (c *Config) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range c.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func v4or6(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }
