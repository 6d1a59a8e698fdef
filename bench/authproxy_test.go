package bench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/bpm-project/bpm/internal/authproxy"
	"github.com/bpm-project/bpm/internal/registry"
)

// BenchmarkProxy puts a small GET straight to a loopback upstream beside the
// same GET through bpm's auth proxy (PASETO token, routing, header hygiene),
// in the same run:
//
//	BenchmarkProxy/direct     client → upstream
//	BenchmarkProxy/bpm-proxy  client → auth proxy → upstream
//
// Each reports p50-ms and p99-ms of sequential round trips (one keep-alive
// connection) and req/s of a parallel phase (64 keep-alive clients for a
// fixed time). Targets (issue 5): added p50 ≤ 0.2 ms, ≥ 20,000 req/s.
func BenchmarkProxy(b *testing.B) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go up.Serve(uln)
	defer up.Close()
	upURL := "http://" + uln.Addr().String()

	proxyURL, token, stop := startProxy(b, upURL)
	defer stop()

	for _, tc := range []struct {
		name, url, authz string
	}{
		{"direct", upURL, ""},
		{"bpm-proxy", proxyURL, "Bearer " + token},
	} {
		b.Run(tc.name, func(b *testing.B) { benchRoundTrip(b, tc.url+"/small", tc.authz) })
	}
}

func newBenchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true}}
}

func doGet(c *http.Client, url, authz string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return &statusErr{resp.StatusCode}
	}
	return nil
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return "status " + http.StatusText(e.code) }

func benchRoundTrip(b *testing.B, url, authz string) {
	c := newBenchClient()
	for range 200 { // warm up connections and caches
		if err := doGet(c, url, authz); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := doGet(c, url, authz); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99-ms")

	// Throughput: 64 concurrent keep-alive clients for a bounded time.
	const workers, window = 64, 2 * time.Second
	pc := newBenchClient()
	var n atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := doGet(pc, url, authz); err != nil {
					failed.Store(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n.Load())/time.Since(t0).Seconds(), "req/s")
}

// startProxy runs a real auth proxy with service 1 routed to upstream and
// returns its URL and a token obtained through the real challenge → verify →
// exchange flow.
func startProxy(b *testing.B, upstream string) (string, string, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	store := registry.NewMemStore()
	reg, _ := registry.Open(ctx, store, nil)
	keys, _ := authproxy.OpenKeyStore(ctx, store)
	owner, _ := secp256k1.GeneratePrivateKey()
	pub := owner.PubKey().SerializeCompressed()
	if err := reg.Create(ctx, &registry.Record{ServiceID: 1, UpstreamURL: upstream, APIKeyPrefix: "bench_",
		Owners: []registry.Owner{{KeyType: registry.KeyTypeEcdsa, KeyBytes: pub}}}); err != nil {
		b.Fatal(err)
	}
	srv, err := authproxy.New(authproxy.Config{Registry: reg, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	base := "http://" + ln.Addr().String()

	post := func(path string, hdr map[string]string, body any, out any) {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(j)))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
		json.NewDecoder(resp.Body).Decode(out)
	}
	var ch struct {
		Challenge string `json:"challenge"`
		ExpiresAt int64  `json:"expires_at"`
	}
	post("/v1/auth/challenge", map[string]string{"X-Service-Id": "1"}, map[string]string{"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa"}, &ch)
	digest, _ := hex.DecodeString(ch.Challenge)
	sig := ecdsa.SignCompact(owner, digest, true)[1:]
	var vr struct {
		Data struct {
			APIKey string `json:"api_key"`
		} `json:"data"`
	}
	post("/v1/auth/verify", map[string]string{"X-Service-Id": "1"}, map[string]any{"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa",
		"challenge": ch.Challenge, "signature": hex.EncodeToString(sig), "expires_at": ch.ExpiresAt}, &vr)
	var ex struct {
		AccessToken string `json:"access_token"`
	}
	post("/v1/auth/exchange", map[string]string{"Authorization": "Bearer " + vr.Data.APIKey}, map[string]any{"ttl_seconds": 3600}, &ex)
	return base, ex.AccessToken, func() { cancel(); <-done; srv.Close() }
}
