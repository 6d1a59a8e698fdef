package provider

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A TunnelSpec printed or logged never shows the gateway's private key.
func TestTunnelSpecRedactsKey(t *testing.T) {
	const key = "YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk6ANCX1Nu5cA="
	s := TunnelSpec{Remote: "aws", GatewayPrivateKey: key}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "spec", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%s", s), logs.String()} {
		if strings.Contains(out, key) || !strings.Contains(out, "aws") {
			t.Fatalf("printed spec: %q", out)
		}
	}
	if s.GatewayEnv()["BPM_GATEWAY_PRIVATE_KEY"] != key {
		t.Fatal("GatewayEnv lost the key")
	}
}
