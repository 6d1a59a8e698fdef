package gateway_test

import (
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// The hub's tunnel address is derived from a CIDR address, and required
// when the address is a single host, as an exported peer config writes it:
// a guessed address would aim the liveness probe that re-handshakes after a
// hub restart at nothing.
func TestConfigHubAddress(t *testing.T) {
	priv, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	hubPriv, _ := tunnel.GeneratePrivateKey()
	env := func(addr, hub string) func(string) string {
		m := map[string]string{
			gateway.EnvHubEndpoint:  "127.0.0.1:51820",
			gateway.EnvHubPublicKey: hubPriv.Public().String(),
			gateway.EnvPrivateKey:   priv.Reveal(),
			gateway.EnvAddress:      addr,
			gateway.EnvHubAddress:   hub,
		}
		return func(k string) string { return m[k] }
	}
	c, err := gateway.ConfigFromEnv(env("10.77.0.3/16", ""))
	if err != nil || c.HubAddress.String() != "10.77.0.1" {
		t.Fatalf("CIDR address: hub %v, %v", c.HubAddress, err)
	}
	_, err = gateway.ConfigFromEnv(env("10.77.0.3/32", ""))
	if err == nil || !strings.Contains(err.Error(), gateway.EnvHubAddress) || !strings.Contains(err.Error(), "AllowedIPs") {
		t.Fatalf("single-host address without hub address: %v", err)
	}
	c, err = gateway.ConfigFromEnv(env("10.77.0.3/32", "10.77.0.1"))
	if err != nil || c.HubAddress.String() != "10.77.0.1" {
		t.Fatalf("single-host address with hub address: %v, %v", c.HubAddress, err)
	}
}
