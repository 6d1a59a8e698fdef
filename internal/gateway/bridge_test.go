package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// controlCall sends one request to the gateway's control channel through
// the tunnel and returns the status and the decoded body.
func controlCall(t *testing.T, hc *http.Client, method, path, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+netip.AddrPortFrom(gwAddr, tunnel.ControlPort).String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestBridgeEndpointValidation sends bad bridge endpoint requests over the
// real control channel: each is a 400 whose message names the field at
// fault, and none binds anything. A valid request is then served, kept,
// and removed, so the refusals are known to come from validation.
func TestBridgeEndpointValidation(t *testing.T) {
	gwKey := mustKey(t)
	hub := startHub(t, mustKey(t), ":0", nil)
	if err := hub.SetPeers([]tunnel.Peer{{Name: "aws", PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		t.Fatal(err)
	}
	startGateway(t, gatewayConfig(hub, gwKey, gwAddr))
	hc := &http.Client{Transport: &http.Transport{DialContext: hub.DialTunnel}}
	defer hc.CloseIdleConnections()
	eventually(t, 10*time.Second, "control channel up", func() error {
		_, err := gateway.NewClient(hub.DialTunnel, gwAddr).Healthz(context.Background())
		return err
	})

	long := strings.Repeat("i", 256)
	for _, tc := range []struct {
		name, body string
		fields     []string // each must be named in the message
	}{
		{"relative path", `{"instance_id":"i-1","listen":"run/bridge.sock"}`, []string{"listen"}},
		{"bare file name", `{"instance_id":"i-1","listen":"bridge.sock"}`, []string{"listen"}},
		{"unclean absolute path", `{"instance_id":"i-1","listen":"/run/bpm/../etc/bridge.sock"}`, []string{"listen"}},
		{"any-address TCP", `{"instance_id":"i-1","listen":"0.0.0.0:9000"}`, []string{"listen"}},
		{"any-address TCP v6", `{"instance_id":"i-1","listen":"[::]:9000"}`, []string{"listen"}},
		{"private-network TCP", `{"instance_id":"i-1","listen":"10.0.0.5:9000"}`, []string{"listen"}},
		{"public TCP", `{"instance_id":"i-1","listen":"203.0.113.7:9000"}`, []string{"listen"}},
		{"host name, not an IP", `{"instance_id":"i-1","listen":"localhost:9000"}`, []string{"listen"}},
		{"loopback without port", `{"instance_id":"i-1","listen":"127.0.0.1"}`, []string{"listen"}},
		{"no listen", `{"instance_id":"i-1"}`, []string{"listen"}},
		{"no instance id", `{"listen":"127.0.0.1:0"}`, []string{"instance_id"}},
		{"instance id too long", `{"instance_id":"` + long + `","listen":"127.0.0.1:0"}`, []string{"instance_id"}},
		{"every problem at once", `{"instance_id":"","listen":"10.0.0.5:1"}`, []string{"instance_id", "listen"}},
		{"truncated JSON", `{"instance_id":"i-1","listen":`, []string{"body"}},
		{"not JSON", `instance_id=i-1`, []string{"body"}},
		{"unknown field", `{"instance_id":"i-1","listen":"127.0.0.1:0","lissten":"x"}`, []string{"body", "lissten"}},
		{"wrong type", `{"instance_id":7,"listen":"127.0.0.1:0"}`, []string{"body", "instance_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := controlCall(t, hc, http.MethodPost, "/v1/bridge/instances", tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", code, b)
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != "invalid" {
				t.Fatalf("body %s: want an error of code invalid (%v)", b, err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(e.Error.Message, f) {
					t.Errorf("message %q does not name %s", e.Error.Message, f)
				}
			}
		})
	}
	if code, b := controlCall(t, hc, http.MethodGet, "/v1/bridge/instances", ""); code != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("after refusals: endpoints %d %s, want none", code, b)
	}
	if code, b := controlCall(t, hc, http.MethodGet, "/v1/bridge/port?preferred=http", ""); code != 400 || !strings.Contains(string(b), "preferred") {
		t.Errorf("port with a bad preferred: %d %s, want 400 naming preferred", code, b)
	}

	// The valid counterpart: created, then kept as is, then removed.
	valid := `{"instance_id":"i-1","listen":"127.0.0.1:0"}`
	code, b := controlCall(t, hc, http.MethodPost, "/v1/bridge/instances", valid)
	var got gateway.BridgeEndpoint
	if code != http.StatusCreated || json.Unmarshal(b, &got) != nil || !strings.HasPrefix(got.Address, "127.0.0.1:") || got.Address == "127.0.0.1:0" {
		t.Fatalf("valid endpoint: %d %s, want 201 with the bound address", code, b)
	}
	if code, b := controlCall(t, hc, http.MethodPost, "/v1/bridge/instances", valid); code != http.StatusOK {
		t.Errorf("same endpoint again: %d %s, want 200", code, b)
	}
	if code, b := controlCall(t, hc, http.MethodDelete, "/v1/bridge/instances/i-1", ""); code != http.StatusNoContent {
		t.Errorf("delete: %d %s, want 204", code, b)
	}
	if code, b := controlCall(t, hc, http.MethodDelete, "/v1/bridge/instances/i-1", ""); code != http.StatusNotFound {
		t.Errorf("delete again: %d %s, want 404", code, b)
	}
}
