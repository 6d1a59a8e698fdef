package main

import (
	"bytes"
	"context"
	"encoding/hex"
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

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/registry"
)

// Public keys only: Substrate's //Alice (the wire sheet's vectors).
const (
	aliceECDSA = "020a1091341fe5664bfa1782d5e04779689068c916b04cb365ec3153755684d9a1"
	aliceSR    = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
)

// syncBuffer is a log sink safe for the server goroutine and the test.
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

// startBridge serves a real bridge on a real unix socket, backed by a
// MemStore registry, as the manager will.
func startBridge(t *testing.T) (path string, reg *registry.Registry, srv *bridge.Server) {
	t.Helper()
	// t.TempDir paths can exceed a unix socket's 107 bytes.
	dir, err := os.MkdirTemp("", "echobr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	reg, err = registry.Open(t.Context(), registry.NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = bridge.New(bridge.Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	path = bridge.SocketPath(dir, 1, 7)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTransport(ctx, &bridge.Unix{Path: path}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bridge socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return path, reg, srv
}

// startEcho runs echo's run with env and returns its address, a cancel
// (SIGTERM) and the channel run's result arrives on.
func startEcho(t *testing.T, env map[string]string, log *slog.Logger) (string, context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, envMap(env), log, ready) }()
	select {
	case addr := <-ready:
		return addr, cancel, done
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("echo did not start")
	}
	return "", nil, nil
}

func waitDone(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// TestRegistersThroughBridgeAndUnregistersOnShutdown: echo against a real
// bridge server registers the right record, and on shutdown unregisters it
// itself — the pin is cleared while the bridge is still up, which only the
// Unregister RPC does (the bridge's own shutdown would delete the record
// too, so the record alone would not prove it).
func TestRegistersThroughBridgeAndUnregistersOnShutdown(t *testing.T) {
	path, reg, srv := startBridge(t)
	var logs syncBuffer
	addr, cancel, done := startEcho(t, map[string]string{
		"PORT":                "0",
		"SERVICE_ID":          "7",
		"BRIDGE_SOCKET_PATH":  path,
		"ECHO_API_KEY_PREFIX": "echo_",
		"ECHO_OWNERS":         "ecdsa:" + aliceECDSA + ", sr25519:0x" + aliceSR,
	}, slog.New(slog.NewTextHandler(&logs, nil)))

	select {
	case <-srv.Ready():
	default:
		t.Fatal("echo did not Ping the bridge")
	}
	rec, err := reg.Get(registry.ID{Main: 7})
	if err != nil {
		t.Fatalf("no record for service 7: %v\n%s", err, logs.String())
	}
	if rec.UpstreamURL != "http://"+addr || rec.APIKeyPrefix != "echo_" || rec.Transport != registry.TransportTCPLocal {
		t.Errorf("record = upstream %q prefix %q transport %q; want http://%s echo_ tcp-local", rec.UpstreamURL, rec.APIKeyPrefix, rec.Transport, addr)
	}
	ec, _ := hex.DecodeString(aliceECDSA)
	sr, _ := hex.DecodeString(aliceSR)
	want := []registry.Owner{{KeyType: registry.KeyTypeEcdsa, KeyBytes: ec}, {KeyType: registry.KeyTypeSr25519, KeyBytes: sr}}
	if len(rec.Owners) != len(want) || !rec.Owners[0].Equal(want[0]) || !rec.Owners[1].Equal(want[1]) {
		t.Errorf("owners = %+v, want %+v", rec.Owners, want)
	}
	if id, ok := srv.Pinned(); !ok || id != 7 {
		t.Errorf("bridge pinned = %d, %v; want 7", id, ok)
	}
	// The registered upstream really is echo.
	resp, err := http.Get(rec.UpstreamURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	waitDone(t, done)
	if _, err := reg.Get(registry.ID{Main: 7}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("record still there after shutdown: %v", err)
	}
	if _, ok := srv.Pinned(); ok {
		t.Error("bridge still pinned: echo did not call Unregister")
	}
	if !strings.Contains(logs.String(), "bridge: unregistered") {
		t.Errorf("no unregister log:\n%s", logs.String())
	}
}

// TestNoOwnersSaysNobodyCanLogIn: registering without owners works (as the
// SDK allows) but is called out in the log.
func TestNoOwnersSaysNobodyCanLogIn(t *testing.T) {
	path, reg, _ := startBridge(t)
	var logs syncBuffer
	_, cancel, done := startEcho(t, map[string]string{"PORT": "0", "SERVICE_ID": "9", "BRIDGE_SOCKET_PATH": path},
		slog.New(slog.NewTextHandler(&logs, nil)))
	rec, err := reg.Get(registry.ID{Main: 9})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Owners) != 0 || rec.APIKeyPrefix != "" {
		t.Errorf("record = %+v; want no owners and the SDK's empty prefix", rec)
	}
	if !strings.Contains(logs.String(), "nobody can obtain an API key") {
		t.Errorf("no warning about missing owners:\n%s", logs.String())
	}
	cancel()
	waitDone(t, done)
}

// TestServesWithoutBridge: a socket path with nothing behind it (today's
// manager) or garbage costs one log line, and echo still serves.
func TestServesWithoutBridge(t *testing.T) {
	dir, _ := os.MkdirTemp("", "echobr")
	defer os.RemoveAll(dir)
	notASocket := filepath.Join(dir, "plain-file")
	os.WriteFile(notASocket, nil, 0o600)
	for name, sock := range map[string]string{
		"missing":      filepath.Join(dir, "nothing.sock"),
		"not a socket": notASocket,
	} {
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			start := time.Now()
			addr, cancel, done := startEcho(t, map[string]string{"PORT": "0", "SERVICE_ID": "7", "BRIDGE_SOCKET_PATH": sock},
				slog.New(slog.NewTextHandler(&logs, nil)))
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("startup took %v without a bridge", d)
			}
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "ok" {
				t.Fatalf("healthz = %q", body)
			}
			cancel()
			waitDone(t, done)
			if n := strings.Count(logs.String(), "bridge:"); n != 1 {
				t.Errorf("%d bridge log lines, want 1:\n%s", n, logs.String())
			}
		})
	}
}

func TestParseOwners(t *testing.T) {
	good := []string{"", " ", "ecdsa:" + aliceECDSA, "ECDSA:0x" + aliceECDSA + ",,sr25519:" + aliceSR,
		"ecdsa:04" + strings.Repeat("ab", 64)}
	for _, s := range good {
		if _, err := parseOwners(s); err != nil {
			t.Errorf("parseOwners(%q): %v", s, err)
		}
	}
	bad := []string{aliceECDSA, "ecdsa:zz", "ecdsa:" + aliceSR, "sr25519:" + aliceECDSA, "bn254:" + aliceSR, "ecdsa:05" + aliceECDSA[2:]}
	for _, s := range bad {
		if _, err := parseOwners(s); err == nil {
			t.Errorf("parseOwners(%q) accepted", s)
		}
	}
	// A bad ECHO_OWNERS stops echo before it listens.
	err := run(t.Context(), envMap(map[string]string{"PORT": "0", "ECHO_OWNERS": "ecdsa:nothex"}), slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "ECHO_OWNERS") {
		t.Errorf("run with bad ECHO_OWNERS = %v", err)
	}
}

func TestUpstreamURL(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "http://[::1]:9"},
	} {
		if got := upstreamURL(c.addr); got != c.want {
			t.Errorf("upstreamURL(%v) = %s, want %s", c.addr, got, c.want)
		}
	}
}
