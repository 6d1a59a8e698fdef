package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// Tunnel benchmarks (the WireGuard issue's Speed section). The baseline is
// the same traffic straight over loopback TCP; bpm-tunnel goes hub netstack
// → WireGuard over loopback UDP → gateway netstack → gateway relay →
// loopback TCP to the same server. Hub and gateway run in this process, so
// both ends' CPU is counted against the same two cores, as on one machine.
//
//	BenchmarkTunnelBulk/{loopback-tcp,bpm-tunnel}  MB/s of one TCP stream, MTU 1420
//	BenchmarkTunnelRTT/{loopback-http,bpm-tunnel}  HTTP request round trip, p50/p99
//	BenchmarkHubPeers1000                          hub memory per configured peer

// tunnelPair is a hub with one in-process gateway named "bench".
type tunnelPair struct {
	hub *tunnel.Hub
	gw  *gateway.Gateway
}

func newTunnelPair(b *testing.B) *tunnelPair {
	b.Helper()
	hubKey, _ := tunnel.GeneratePrivateKey()
	gwKey, _ := tunnel.GeneratePrivateKey()
	log := slog.New(slog.DiscardHandler)
	hub, err := tunnel.NewHub(context.Background(), tunnel.HubConfig{
		PrivateKey: hubKey, Address: netip.MustParseAddr("10.77.0.1"), ListenAddr: ":0", Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	gwAddr := netip.MustParseAddr("10.77.0.2")
	if err := hub.SetPeers([]tunnel.Peer{{Name: "bench", PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.Start(context.Background(), gateway.Config{
		HubEndpoint: hub.Endpoint(), HubPublicKey: hub.PublicKey(), HubAddress: hub.Address(),
		PrivateKey: gwKey, Address: gwAddr, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Close(ctx)
		hub.Close()
	})
	return &tunnelPair{hub: hub, gw: gw}
}

// sink accepts connections and discards what they send, then writes back
// the byte count so the sender knows everything arrived.
func sink(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			}()
		}
	}()
	return l.Addr().String()
}

func BenchmarkTunnelBulk(b *testing.B) {
	const chunk = 1 << 20
	run := func(b *testing.B, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
		addr := sink(b)
		c, err := dial(context.Background(), "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		// Count the time until the last byte arrived, not only until it
		// left the sender's buffers.
		c.(interface{ CloseWrite() error }).CloseWrite()
		var n int64
		if _, err := fmt.Fscan(c, &n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n != int64(b.N)*chunk {
			b.Fatalf("sink received %d bytes, sent %d", n, int64(b.N)*chunk)
		}
		b.ReportMetric(float64(n)*8/b.Elapsed().Seconds()/1e9, "Gbit/s")
	}
	b.Run("loopback-tcp", func(b *testing.B) {
		var d net.Dialer
		run(b, d.DialContext)
	})
	b.Run("bpm-tunnel", func(b *testing.B) {
		p := newTunnelPair(b)
		run(b, p.hub.Via("bench").DialContext)
	})
}

func BenchmarkTunnelRTT(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	url := "http://" + l.Addr().String() + "/"
	run := func(b *testing.B, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
		hc := &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		get := func() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		for range 200 { // warm: connection up, buffers and code paths hot
			get()
		}
		lat := make([]time.Duration, 0, 1<<16)
		b.ResetTimer()
		for b.Loop() {
			t0 := time.Now()
			get()
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99-ms")
	}
	b.Run("loopback-http", func(b *testing.B) {
		var d net.Dialer
		run(b, d.DialContext)
	})
	b.Run("bpm-tunnel", func(b *testing.B) {
		p := newTunnelPair(b)
		run(b, p.hub.Via("bench").DialContext)
	})
}

// BenchmarkHubPeers1000 configures 1,000 peers on one hub and reports the
// memory they cost, then brings up a sample of gateways among them and
// checks each is reachable (all 1,000 in one process would measure the
// gateways, not the hub).
func BenchmarkHubPeers1000(b *testing.B) {
	const peers, sample = 1000, 10
	for b.Loop() {
		log := slog.New(slog.DiscardHandler)
		hubKey, _ := tunnel.GeneratePrivateKey()
		prefix := netip.MustParsePrefix("10.77.0.0/16")
		alloc, _ := tunnel.NewAllocator(prefix, &tunnel.MemStore{})
		hub, err := tunnel.NewHub(context.Background(), tunnel.HubConfig{PrivateKey: hubKey, Address: alloc.Hub(), ListenAddr: ":0", Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]tunnel.PrivateKey, peers)
		ps := make([]tunnel.Peer, peers)
		for i := range ps {
			keys[i], _ = tunnel.GeneratePrivateKey()
			addr, err := alloc.Allocate(context.Background(), fmt.Sprintf("r%d", i))
			if err != nil {
				b.Fatal(err)
			}
			ps[i] = tunnel.Peer{Name: fmt.Sprintf("r%d", i), PublicKey: keys[i].Public(), Address: addr}
		}
		before := memInUse()
		if err := hub.SetPeers(ps); err != nil {
			b.Fatal(err)
		}
		after := memInUse()
		b.ReportMetric(float64(after-before)/peers/1024, "KiB/peer")

		inst, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				c, err := inst.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("x"))
				c.Close()
			}
		}()
		for j := range sample {
			i := j * (peers / sample)
			gw, err := gateway.Start(context.Background(), gateway.Config{
				HubEndpoint: hub.Endpoint(), HubPublicKey: hub.PublicKey(), HubAddress: hub.Address(),
				PrivateKey: keys[i], Address: ps[i].Address, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			}, log)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := hub.Via(ps[i].Name).DialContext(ctx, "tcp", inst.Addr().String())
			if err == nil {
				var one [1]byte
				_, err = io.ReadFull(c, one[:])
				c.Close()
			}
			cancel()
			gw.Close(context.Background())
			if err != nil {
				b.Fatalf("peer %s among %d not reachable: %v", ps[i].Name, peers, err)
			}
		}
		inst.Close()
		hub.Close()
	}
}

// memInUse is heap plus goroutine stacks in use after a collection:
// wireguard-go gives each peer queues (heap) and goroutines (stacks).
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
