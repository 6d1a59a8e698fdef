package kubernetes

import "testing"

func TestGatewayName(t *testing.T) {
	seen := map[string]string{}
	for _, remote := range []string{"aws", "a-b", "a_b", "edge-", "x_", strings63()} {
		n := gatewayName(remote)
		if len(n) > 253 || !validSubdomain(n) {
			t.Errorf("gatewayName(%q) = %q: not a valid object name", remote, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("remotes %q and %q share the gateway name %q", other, remote, n)
		}
		seen[n] = remote
	}
	if got := gatewayName("aws"); got != "bpm-gateway-aws" {
		t.Errorf("gatewayName(aws) = %q, want the plain name", got)
	}
}

func strings63() string {
	b := make([]byte, 63)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}
