package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hubBridge stands in for the manager's bridge mux on the hub's
// tunnel.BridgePort: it accepts each relayed connection, reports the
// instance id the relay header named, and then echoes the stream, so a
// test sees exactly which instance a connection reached and that bytes
// flow both ways.
func hubBridge(t *testing.T, hub *tunnel.Hub) <-chan string {
	t.Helper()
	ln, err := hub.Listen(tunnel.BridgePort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ids := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				id, err := tunnel.ReadRelayRequest(c)
				if err != nil {
					return
				}
				ids <- id
				if tunnel.WriteRelayReply(c, tunnel.RelayOK, "") != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ids
}

// relayFixture is a hub, a gateway with a relay port, both logging into
// buffers, and a control channel client.
type relayFixture struct {
	hub    *tunnel.Hub
	gw     *gateway.Gateway
	ctl    *http.Client
	ids    <-chan string
	gwLogs *syncBuffer
}

func startRelayFixture(t *testing.T) *relayFixture {
	t.Helper()
	gwKey := mustKey(t)
	hub := startHub(t, mustKey(t), ":0", nil)
	if err := hub.SetPeers([]tunnel.Peer{{Name: "k8s", PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		t.Fatal(err)
	}
	f := &relayFixture{hub: hub, ids: hubBridge(t, hub), gwLogs: &syncBuffer{}}
	cfg := gatewayConfig(hub, gwKey, gwAddr)
	cfg.BridgeListen = "127.0.0.1:0"
	g, err := gateway.Start(context.Background(), cfg,
		slog.New(slog.NewTextHandler(f.gwLogs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	f.gw = g
	f.ctl = &http.Client{Transport: &http.Transport{DialContext: hub.DialTunnel}}
	t.Cleanup(f.ctl.CloseIdleConnections)
	eventually(t, 10*time.Second, "control channel up", func() error {
		_, err := gateway.NewClient(hub.DialTunnel, gwAddr).Healthz(context.Background())
		return err
	})
	return f
}

// echoThrough writes msg on c and reads it back.
func echoThrough(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("read back %q, want %q", got, msg)
	}
}

// nothingReached fails if the hub's bridge saw a connection.
func nothingReached(t *testing.T, ids <-chan string, what string) {
	t.Helper()
	select {
	case id := <-ids:
		t.Fatalf("%s: the hub's bridge was reached for %q", what, id)
	case <-time.After(200 * time.Millisecond):
	}
}

const (
	tokenA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa="
	tokenB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb="
)

// TestBridgeRelay runs the Kubernetes bridge path on loopback: the manager
// registers instance i-1 with a token over the control channel, the
// sidecar (RunBridgeRelay) serves the instance's socket, and a connection
// to it reaches the hub's bridge named i-1 through the gateway's relay
// port and the tunnel. Wrong tokens, unknown instances, a garbage preamble
// and a closed endpoint are refused before anything reaches the hub; the
// token appears neither in the gateway's answers nor in any log.
func TestBridgeRelay(t *testing.T) {
	f := startRelayFixture(t)
	relay := f.gw.BridgeRelayAddr()
	if relay == "" {
		t.Fatal("the gateway serves no relay port")
	}

	code, b := controlCall(t, f.ctl, http.MethodPost, "/v1/bridge/instances", `{"instance_id":"i-1","token":"`+tokenA+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s, want 201", code, b)
	}
	var ep gateway.BridgeEndpoint
	if err := json.Unmarshal(b, &ep); err != nil || !ep.Relay || ep.Listen != "" {
		t.Fatalf("register reply %s: want relay true and no listen (%v)", b, err)
	}
	for _, path := range []string{"", "again"} {
		if path == "again" {
			code, b = controlCall(t, f.ctl, http.MethodPost, "/v1/bridge/instances", `{"instance_id":"i-1","token":"`+tokenA+`"}`)
			if code != http.StatusOK {
				t.Fatalf("register again: %d %s, want 200 (kept)", code, b)
			}
		}
		if strings.Contains(string(b), tokenA) {
			t.Fatalf("the reply echoes the token: %s", b)
		}
	}
	code, b = controlCall(t, f.ctl, http.MethodGet, "/v1/bridge/instances", "")
	if code != 200 || strings.Contains(string(b), tokenA) || !strings.Contains(string(b), `"relay":true`) {
		t.Fatalf("listing %d %s: want relay true and no token", code, b)
	}

	// The sidecar, reading its settings as the pod gives them.
	dir := filepath.Join(t.TempDir(), "bridge")
	sock := filepath.Join(dir, "svc-7-42", "svc-7-42.sock")
	env := map[string]string{
		gateway.EnvRelayListen: sock, gateway.EnvRelayGateway: relay,
		gateway.EnvRelayInstance: "i-1", gateway.EnvRelayToken: tokenA,
	}
	cfg, err := gateway.RelayConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	sideLogs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gateway.RunBridgeRelay(ctx, cfg, slog.New(slog.NewTextHandler(sideLogs, nil)))
	}()
	eventually(t, 5*time.Second, "sidecar socket", func() error { return gateway.CheckBridgeRelay(sock) })
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c.Close()
	select {
	case id := <-f.ids:
		if id != "i-1" {
			t.Fatalf("the hub's bridge was reached for %q, want i-1", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hub's bridge saw no connection")
	}

	// Refusals: none reaches the hub.
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	for _, tc := range []struct{ name, id, token string }{
		{"wrong token", "i-1", tokenB},
		{"token of another length", "i-1", "short"},
		{"unknown instance", "i-2", tokenA},
	} {
		if c, err := gateway.DialBridgeRelay(dctx, relay, tc.id, tc.token); !errors.Is(err, gateway.ErrRelayRefused) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: %v, want ErrRelayRefused", tc.name, err)
		}
		nothingReached(t, f.ids, tc.name)
	}
	raw, err := net.Dial("tcp", relay)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// The gateway's challenge comes first, then its answer.
	if b, _ := io.ReadAll(raw); len(b) < 33 || b[32] != 3 {
		t.Errorf("garbage preamble: answer %q, want the 32-byte challenge, the bad-request status and a close", b)
	}
	raw.Close()
	nothingReached(t, f.ids, "garbage preamble")

	// A new token replaces the old one.
	if code, b := controlCall(t, f.ctl, http.MethodPost, "/v1/bridge/instances", `{"instance_id":"i-1","token":"`+tokenB+`"}`); code != http.StatusOK {
		t.Fatalf("new token: %d %s, want 200", code, b)
	}
	if _, err := gateway.DialBridgeRelay(dctx, relay, "i-1", tokenA); !errors.Is(err, gateway.ErrRelayRefused) {
		t.Errorf("old token after replacement: %v, want ErrRelayRefused", err)
	}
	c2, err := gateway.DialBridgeRelay(dctx, relay, "i-1", tokenB)
	if err != nil {
		t.Fatalf("new token: %v", err)
	}
	echoThrough(t, c2, "ping")
	c2.Close()
	<-f.ids

	// Closed: the token no longer admits; the sidecar's connection is
	// closed instead of relayed.
	if code, b := controlCall(t, f.ctl, http.MethodDelete, "/v1/bridge/instances/i-1", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, b)
	}
	if _, err := gateway.DialBridgeRelay(dctx, relay, "i-1", tokenB); !errors.Is(err, gateway.ErrRelayRefused) {
		t.Errorf("after delete: %v, want ErrRelayRefused", err)
	}
	c3, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	_ = c3.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c3.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("sidecar after delete: read %d, %v; want the connection closed", n, err)
	}
	c3.Close()
	nothingReached(t, f.ids, "after delete")

	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunBridgeRelay: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after the sidecar stopped: %v", err)
	}

	logs := f.gwLogs.String() + sideLogs.String()
	for _, tok := range []string{tokenA, tokenB} {
		if strings.Contains(logs, tok) {
			t.Fatalf("a token is in the logs:\n%s", logs)
		}
	}
	for _, want := range []string{"reason=\"wrong token\"", "reason=\"no relay endpoint for this instance\"", "bad magic"} {
		if !strings.Contains(f.gwLogs.String(), want) {
			t.Errorf("gateway logs lack %q:\n%s", want, f.gwLogs.String())
		}
	}
	if !strings.Contains(sideLogs.String(), "bridge relay failed") {
		t.Errorf("sidecar logs lack the refused relay:\n%s", sideLogs.String())
	}
}

// TestBridgeRelayValidation: bad tokens are refused by the control
// channel, naming the field but never quoting the value; a token without
// listen is valid, listen and token together too.
func TestBridgeRelayValidation(t *testing.T) {
	f := startRelayFixture(t)
	short := "tooshort-secret"
	for _, tc := range []struct{ name, body string }{
		{"short token", `{"instance_id":"i-1","token":"` + short + `"}`},
		{"long token", `{"instance_id":"i-1","token":"` + strings.Repeat("s", 256) + `"}`},
		{"neither listen nor token", `{"instance_id":"i-1"}`},
	} {
		code, b := controlCall(t, f.ctl, http.MethodPost, "/v1/bridge/instances", tc.body)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, code, b)
		}
		if strings.Contains(string(b), short) || strings.Contains(string(b), "ssssssss") {
			t.Errorf("%s: the error quotes the token: %s", tc.name, b)
		}
	}
	code, b := controlCall(t, f.ctl, http.MethodPost, "/v1/bridge/instances", `{"instance_id":"i-3","listen":"127.0.0.1:0","token":"`+tokenA+`"}`)
	if code != http.StatusCreated || strings.Contains(string(b), tokenA) || !strings.Contains(string(b), `"relay":true`) {
		t.Fatalf("listen and token: %d %s", code, b)
	}
	if strings.Contains(f.gwLogs.String(), short) || strings.Contains(f.gwLogs.String(), tokenA) {
		t.Fatalf("a token is in the gateway's logs:\n%s", f.gwLogs.String())
	}
}

// TestRelayConfigFromEnv names every missing setting at once and never
// quotes the token.
func TestRelayConfigFromEnv(t *testing.T) {
	_, err := gateway.RelayConfigFromEnv(func(k string) string {
		if k == gateway.EnvRelayToken {
			return "leaky-but-short"
		}
		if k == gateway.EnvRelayListen {
			return "relative/path.sock"
		}
		return ""
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{gateway.EnvRelayListen, gateway.EnvRelayGateway, gateway.EnvRelayInstance, gateway.EnvRelayToken} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "leaky") {
		t.Errorf("error quotes the token: %v", err)
	}
}

// TestBridgeListenConfig: the relay port is configured by
// BPM_GATEWAY_BRIDGE_LISTEN (or bridge_listen in a file) and a bad value
// names the variable.
func TestBridgeListenConfig(t *testing.T) {
	base := map[string]string{
		"BPM_GATEWAY_HUB_ENDPOINT":   "203.0.113.1:51820",
		"BPM_GATEWAY_HUB_PUBLIC_KEY": mustKey(t).Public().String(),
		"BPM_GATEWAY_PRIVATE_KEY":    mustKey(t).Reveal(),
		"BPM_GATEWAY_ADDRESS":        "10.77.0.2/16",
	}
	for _, tc := range []struct {
		listen string
		ok     bool
	}{{":7004", true}, {"0.0.0.0:7004", true}, {"[::]:7004", true}, {"7004", false}, {"gateway:7004", false}, {":http", false}} {
		env := map[string]string{gateway.EnvBridgeListen: tc.listen}
		for k, v := range base {
			env[k] = v
		}
		cfg, err := gateway.ConfigFromEnv(func(k string) string { return env[k] })
		switch {
		case tc.ok && (err != nil || cfg.BridgeListen != tc.listen):
			t.Errorf("%q: %v, BridgeListen %q", tc.listen, err, cfg.BridgeListen)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), gateway.EnvBridgeListen)):
			t.Errorf("%q: %v, want an error naming %s", tc.listen, err, gateway.EnvBridgeListen)
		}
	}
}
