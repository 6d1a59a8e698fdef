package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/testenv/udprelay"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// The fault tests put the UDP impairment relay between a real hub and a
// real gateway, both in this process on loopback:
//
//	hub (tunnel.Hub) <-> udprelay <-> gateway (gateway.Gateway) -> instance
//
// The gateway only knows the relay's address as the hub endpoint, so every
// WireGuard datagram of the tunnel crosses the relay, and the relay's
// impairments are the network's. Requests go the way the manager sends
// them: hub.Via(remote) relays a TCP connection through the gateway to an
// HTTP server on loopback (the instance). Each scenario builds its own rig
// on ports of its own, so they run in parallel.

const faultRemote = "edge"

var (
	faultHubAddr = netip.MustParseAddr("10.99.0.1")
	faultGwAddr  = netip.MustParseAddr("10.99.0.2")
)

// bigBody is what the instance serves at /big: large enough that TCP has a
// window of segments in flight, so a lost segment in the middle of a
// transfer is recovered too, not only lost handshakes.
var bigBody = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

type faultRig struct {
	t      *testing.T
	hubKey tunnel.PrivateKey
	gwKey  tunnel.PrivateKey
	store  *tunnel.MemStore
	hub    *tunnel.Hub
	relay  *udprelay.Relay
	gw     *gateway.Gateway
	inst   string // instance address, as the gateway dials it
	peers  []tunnel.Peer
}

func faultLogger(side string) *slog.Logger {
	if os.Getenv("BPM_TEST_VERBOSE") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("side", side)
}

func mustGenKey(t *testing.T) tunnel.PrivateKey {
	t.Helper()
	k, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newFaultRig starts hub, relay, instance and gateway, and waits for the
// first request to be served.
func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	r := &faultRig{t: t, hubKey: mustGenKey(t), gwKey: mustGenKey(t), store: &tunnel.MemStore{}}
	r.peers = []tunnel.Peer{{Name: faultRemote, PublicKey: r.gwKey.Public(), Address: faultGwAddr}}
	r.startHub(0)
	relay, err := udprelay.Listen(udprelay.Options{
		Listen:   "127.0.0.1:0",
		Upstream: fmt.Sprintf("127.0.0.1:%d", r.hub.ListenPort()),
		Logger:   faultLogger("relay"),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.relay = relay
	t.Cleanup(func() { relay.Close() })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "served") })
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, _ *http.Request) { w.Write(bigBody) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	r.inst = l.Addr().String()

	r.startGateway()
	d := r.waitServing(30*time.Second, "first request through the relay")
	t.Logf("first request served %v after the gateway started", d.Round(time.Millisecond))
	return r
}

// startHub starts a hub with the rig's key and store on port (0: any).
func (r *faultRig) startHub(port uint16) {
	r.t.Helper()
	h, err := tunnel.NewHub(context.Background(), tunnel.HubConfig{
		PrivateKey: r.hubKey,
		Address:    faultHubAddr,
		ListenAddr: fmt.Sprintf(":%d", port),
		Store:      r.store,
		Logger:     faultLogger("hub"),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { h.Close() })
	if err := h.SetPeers(r.peers); err != nil {
		r.t.Fatal(err)
	}
	r.hub = h
}

// startGateway starts a gateway with the rig's key that knows the relay as
// the hub's endpoint.
func (r *faultRig) startGateway() {
	r.t.Helper()
	g, err := gateway.Start(context.Background(), gateway.Config{
		HubEndpoint:  r.relay.Addr().String(),
		HubPublicKey: r.hubKey.Public(),
		HubAddress:   faultHubAddr,
		PrivateKey:   r.gwKey,
		Address:      faultGwAddr,
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, faultLogger("gateway"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.closeGateway(g) })
	r.gw = g
}

func (r *faultRig) closeGateway(g *gateway.Gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.Close(ctx)
}

// get sends one request for path through the tunnel on a new connection
// (no keep-alive: every request dials through the gateway again), bounded
// by ctx, and checks the body.
func (r *faultRig) get(ctx context.Context, path string) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: r.hub.Via(faultRemote).DialContext, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.inst+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	want := []byte("served")
	if path == "/big" {
		want = bigBody
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
		return fmt.Errorf("GET %s: %s, %d bytes, not the instance's answer", path, resp.Status, len(b))
	}
	return nil
}

// waitServing polls until a request is served, each attempt bounded, and
// returns how long that took; it fails the test after within.
func (r *faultRig) waitServing(within time.Duration, what string) time.Duration {
	r.t.Helper()
	d, err := firstSuccess(within, 250*time.Millisecond, func(ctx context.Context) error { return r.get(ctx, "/") })
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	return d
}

// firstSuccess starts an attempt every `every`, without waiting for the
// previous one, each bounded to 3 s, and returns the time from the call
// until the first attempt succeeded. Overlapping attempts keep TCP's
// exponential SYN backoff out of the figure: a connection whose SYN was
// lost retries only after a second or more, but the next attempt sends a
// fresh SYN at once, so the figure is when the tunnel served again, not
// when one unlucky connection got round to it.
func firstSuccess(within, every time.Duration, attempt func(context.Context) error) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan time.Duration, 1)
	var mu sync.Mutex
	var lastErr error
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, acancel := context.WithTimeout(ctx, 3*time.Second)
			defer acancel()
			if err := attempt(actx); err != nil {
				mu.Lock()
				lastErr = err
				mu.Unlock()
				return
			}
			select {
			case done <- time.Since(start):
			default:
			}
		}()
		select {
		case d := <-done:
			cancel()
			return d, nil
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			return 0, fmt.Errorf("no request served within %s (last error: %w)", within, lastErr)
		case <-tick.C:
		}
	}
}

func skipIfShort(t *testing.T) {
	if testing.Short() {
		t.Skip("fault tests wait for real WireGuard timers")
	}
}

// TestFaultLossAndDelay: with 5% of datagrams lost and 50 ms added in each
// direction, every one of 50 requests still succeeds within its own
// deadline; TCP inside the tunnel recovers what WireGuard's UDP loses.
func TestFaultLossAndDelay(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	r := newFaultRig(t)
	if err := r.relay.SetConfig(udprelay.Symmetric(udprelay.Impairment{Drop: 0.05, Delay: udprelay.Duration(50 * time.Millisecond)})); err != nil {
		t.Fatal(err)
	}
	before := r.relay.Stats()

	const requests, workers = 50, 5
	jobs := make(chan int)
	var mu sync.Mutex
	var failures []string
	var took []time.Duration
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				path := "/"
				if i%5 == 4 {
					path = "/big"
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				start := time.Now()
				err := r.get(ctx, path)
				d := time.Since(start)
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("request %d (%s) after %v: %v", i, path, d.Round(time.Millisecond), err))
				} else {
					took = append(took, d)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range requests {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	st := r.relay.Stats()
	up, down := st.Up.Dropped-before.Up.Dropped, st.Down.Dropped-before.Down.Dropped
	t.Logf("relay dropped %d of %d datagrams up, %d of %d down", up, st.Up.Received-before.Up.Received, down, st.Down.Received-before.Down.Received)
	if up == 0 || down == 0 {
		t.Errorf("the relay dropped nothing in one direction (up %d, down %d): the impairment was not in the path", up, down)
	}
	if len(took) > 0 {
		slices.Sort(took)
		t.Logf("%d requests served: min %v, p50 %v, max %v", len(took), took[0].Round(time.Millisecond),
			took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		// A request needs several round trips (relay handshake, HTTP), each
		// at least 100 ms through the relay: faster means the delay was not
		// in the path.
		if took[0] < 100*time.Millisecond {
			t.Errorf("fastest request took %v, less than one delayed round trip", took[0])
		}
	}
}

// TestFaultPartitionHealServesWithin5s is the recovery promise:
// after a 30 s partition in both directions, requests are served again
// within 5 s of the link returning.
//
// Requests keep coming during the partition (each must fail), as they
// would from an operator or the manager's health checks; so the hub, too,
// notices the silence and retries handshakes, as does the gateway, whose
// probe is data that goes unanswered. Recovery is then bounded by
// WireGuard's handshake retry interval (REKEY_TIMEOUT, 5 s plus up to
// 1/3 s jitter) on whichever side retries first after the heal.
func TestFaultPartitionHealServesWithin5s(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	r := newFaultRig(t)
	const partition = 30 * time.Second
	if err := r.relay.Partition(udprelay.Both); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(partition)
	tries := 0
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, time.Until(end)))
		err := r.get(ctx, "/")
		cancel()
		tries++
		if err == nil {
			t.Fatalf("a request was served through a partitioned link (try %d)", tries)
		}
		time.Sleep(min(time.Second, max(0, time.Until(end))))
	}
	st := r.relay.Stats()
	if st.Up.Partitioned == 0 || st.Down.Partitioned == 0 {
		t.Errorf("partition dropped up %d, down %d datagrams: both sides should have kept trying", st.Up.Partitioned, st.Down.Partitioned)
	}
	r.relay.Heal()
	d, err := firstSuccess(30*time.Second, 100*time.Millisecond, func(ctx context.Context) error { return r.get(ctx, "/") })
	if err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	t.Logf("partition of %v (%d failed requests during it): serving again %v after the heal", partition, tries, d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("serving again took %v after the heal, want at most 5s", d.Round(time.Millisecond))
	}
}

// TestFaultHubRestart: the hub stops and a new one starts with the same key
// on the same port; the gateway, which keeps its old session, is served
// again with no manual step. Twice: as the manager restarts (the hub's
// store remembers where the gateway was, so the new hub starts the
// handshake itself), and as after a crash before the hub saved anything
// (a new, empty store: only the gateway's unanswered probes make it
// re-handshake, after WireGuard's 15 s).
func TestFaultHubRestart(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	for _, tc := range []struct {
		name     string
		remember bool
	}{{"endpoint remembered", true}, {"endpoint forgotten", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t)
			port := r.hub.ListenPort()
			if err := r.hub.Close(); err != nil {
				t.Fatal(err)
			}
			// The gateway is still up; only the hub is gone.
			if err := pingUDP(port); err == nil {
				t.Fatalf("hub port %d still answers after Close", port)
			}
			if !tc.remember {
				r.store = &tunnel.MemStore{}
			}
			r.startHub(port)
			d := r.waitServing(60*time.Second, "served after a hub restart")
			t.Logf("hub restart (same key and port, %s): serving again %v after the new hub started", tc.name, d.Round(time.Millisecond))
			ps, err := r.hub.PeerStats()
			if err != nil || len(ps) != 1 || ps[0].LastHandshake.IsZero() {
				t.Fatalf("new hub's peers: %+v, %v", ps, err)
			}
		})
	}
}

// TestFaultGatewayRestart: the gateway stops and a new one starts with the
// same key; it comes from a new UDP port (a new relay session, as after a
// NAT rebinding), the hub follows it to the new endpoint, and requests are
// served again with no manual step.
func TestFaultGatewayRestart(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	r := newFaultRig(t)
	before, err := r.hub.PeerStats()
	if err != nil || len(before) != 1 || before[0].Endpoint == "" {
		t.Fatalf("peer before restart: %+v, %v", before, err)
	}
	r.closeGateway(r.gw)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = r.get(ctx, "/")
	cancel()
	if err == nil {
		t.Fatal("request served with the gateway stopped")
	}
	r.startGateway()
	d := r.waitServing(30*time.Second, "served after a gateway restart")
	t.Logf("gateway restart (same key): serving again %v after the new gateway started", d.Round(time.Millisecond))
	after, err := r.hub.PeerStats()
	if err != nil || len(after) != 1 {
		t.Fatalf("peer after restart: %+v, %v", after, err)
	}
	if after[0].Endpoint == before[0].Endpoint {
		t.Errorf("hub endpoint for the gateway still %s: the new gateway should come from a new relay session", after[0].Endpoint)
	}
	if n := r.relay.Stats().Sessions; n < 2 {
		t.Errorf("relay has %d sessions, want the old and the new gateway's", n)
	}
}

// pingUDP reports whether something listens on UDP port on loopback: a
// datagram to a closed port comes back as ECONNREFUSED on the next read.
func pingUDP(port uint16) error {
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil // silence: something took the datagram (WireGuard answers nothing invalid)
	}
	return err
}
