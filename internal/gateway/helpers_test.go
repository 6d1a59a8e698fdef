package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// testLogger logs to the test when BPM_TEST_VERBOSE is set, else nowhere.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BPM_TEST_VERBOSE") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustKey(t testing.TB) tunnel.PrivateKey {
	t.Helper()
	k, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	hubAddr = netip.MustParseAddr("10.77.0.1")
	gwAddr  = netip.MustParseAddr("10.77.0.2")
	prefix  = netip.MustParsePrefix("10.77.0.0/16")
)

func startHub(t testing.TB, key tunnel.PrivateKey, listen string, store tunnel.Store) *tunnel.Hub {
	t.Helper()
	h, err := tunnel.NewHub(context.Background(), tunnel.HubConfig{
		PrivateKey: key, Address: hubAddr, ListenAddr: listen, Store: store, Logger: testLogger(t).With("side", "hub"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func gatewayConfig(hub *tunnel.Hub, key tunnel.PrivateKey, addr netip.Addr) gateway.Config {
	return gateway.Config{
		HubEndpoint:  hub.Endpoint(),
		HubPublicKey: hub.PublicKey(),
		HubAddress:   hub.Address(),
		PrivateKey:   key,
		Address:      addr,
		Prefix:       prefix,
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
}

func startGateway(t testing.TB, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	g, err := gateway.Start(context.Background(), cfg, testLogger(t).With("side", "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return g
}

// instance starts an HTTP server on loopback that answers body.
func instance(t testing.TB, body string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// client returns an HTTP client whose connections go through the hub to
// remote name's gateway. Keep-alives are off so every request dials anew
// and exercises the tunnel path, not a pooled connection.
func client(hub *tunnel.Hub, name string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: hub.Via(name).DialContext, DisableKeepAlives: true},
		Timeout:   3 * time.Second,
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// eventually polls f until it succeeds or the deadline passes, returning
// how long it took.
func eventually(t testing.TB, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, within, err)
	return 0
}
