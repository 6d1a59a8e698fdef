package udprelay

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink is an upstream on loopback that records what it receives and echoes
// it back when echo is set.
type sink struct {
	conn *net.UDPConn
	echo bool
	mu   sync.Mutex
	got  [][]byte
}

func newSink(t *testing.T, echo bool) *sink {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: c, echo: echo}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, append([]byte(nil), buf[:n]...))
			s.mu.Unlock()
			if s.echo {
				_, _ = c.WriteToUDP(buf[:n], from)
			}
		}
	}()
	return s
}

func (s *sink) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.got...)
}

func newRelay(t *testing.T, opts Options) *Relay {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	r, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dialRelay(t *testing.T, r *Relay) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func seq(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

// eventually polls cond for up to 10 s: generous, the machine is shared.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// roundTrip sends p and waits up to wait for the echo.
func roundTrip(c *net.UDPConn, p []byte, wait time.Duration) ([]byte, error) {
	if _, err := c.Write(p); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func TestDropFraction(t *testing.T) {
	for _, p := range []float64{0.05, 0.3} {
		up := newSink(t, false)
		r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String()})
		if err := r.SetConfig(Config{Up: Impairment{Drop: p}}); err != nil {
			t.Fatal(err)
		}
		c := dialRelay(t, r)
		const n = 4000
		// Paced in bursts the socket buffers hold, so any loss is the
		// relay's and not the kernel's.
		for i := 0; i < n; i += 100 {
			for j := i; j < i+100; j++ {
				if _, err := c.Write(seq(j)); err != nil {
					t.Fatal(err)
				}
			}
			sent := uint64(i + 100)
			eventually(t, "relay to read the burst", func() bool { return r.Stats().Up.Received == sent })
		}
		// Received counts a datagram when it is read; it is dropped or
		// forwarded a moment later. Every one must be accounted for.
		eventually(t, "every datagram dropped or forwarded", func() bool {
			st := r.Stats().Up
			return st.Dropped+st.Forwarded == n
		})
		st := r.Stats().Up
		eventually(t, "forwarded datagrams to arrive", func() bool { return len(up.received()) == int(st.Forwarded) })
		// Five standard deviations of a binomial(n, p): a correct relay fails
		// this less than once in a million runs.
		got := float64(st.Dropped) / n
		sd := 5 * math.Sqrt(p*(1-p)/n)
		if got < p-sd || got > p+sd {
			t.Errorf("drop %.2f: dropped fraction %.4f, want within %.4f of it", p, got, sd)
		}
		t.Logf("drop %.2f: dropped %d of %d (%.4f)", p, st.Dropped, n, got)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	up := newSink(t, true)
	r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String()})
	c := dialRelay(t, r)

	if _, err := roundTrip(c, []byte("before"), 5*time.Second); err != nil {
		t.Fatalf("round trip before the partition: %v", err)
	}
	if err := r.Partition(Both); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if got, err := roundTrip(c, []byte("during"), 200*time.Millisecond); err == nil {
			t.Fatalf("try %d: got %q through a partition", i, got)
		}
	}
	if n := len(up.received()); n != 1 {
		t.Errorf("upstream received %d datagrams, want only the one before the partition", n)
	}
	if st := r.Stats(); st.Up.Partitioned != 5 {
		t.Errorf("partitioned up = %d, want 5", st.Up.Partitioned)
	}

	// A one-way partition: the upstream hears us, we never hear back.
	r.Heal()
	if err := r.Partition(Down); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, []byte("oneway"), 300*time.Millisecond); err == nil {
		t.Fatal("echo came back through a down partition")
	}
	eventually(t, "upstream to get the one-way datagram", func() bool { return len(up.received()) == 2 })

	r.Heal()
	// The last echo may still be in flight when we heal; skip stale replies.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := roundTrip(c, []byte("after"), time.Second)
		if err == nil && string(got) == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no round trip after heal: %v", err)
		}
	}
}

func TestDelayKeepsOrder(t *testing.T) {
	up := newSink(t, true)
	r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String()})
	const delay = 50 * time.Millisecond
	if err := r.SetConfig(Config{Up: Impairment{Delay: Duration(delay)}}); err != nil {
		t.Fatal(err)
	}
	c := dialRelay(t, r)
	const n = 20
	sent := make([]time.Time, n)
	for i := range n {
		sent[i] = time.Now()
		if _, err := c.Write(seq(i)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for i := range n {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		// Only a lower bound: a loaded machine may add any amount.
		if rtt := time.Since(sent[i]); rtt < delay {
			t.Errorf("datagram %d came back after %v, before the %v delay", i, rtt, delay)
		}
		if got := binary.BigEndian.Uint32(buf[:m]); got != uint32(i) {
			t.Fatalf("datagram %d: got %d; a fixed delay must keep the order", i, got)
		}
	}
}

func TestReorderSwapsPairs(t *testing.T) {
	up := newSink(t, false)
	// A long timeout so a slow scheduler cannot release a held datagram
	// before its successor arrives.
	r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String(), ReorderTimeout: 5 * time.Second})
	if err := r.SetConfig(Config{Up: Impairment{Reorder: 1}}); err != nil {
		t.Fatal(err)
	}
	c := dialRelay(t, r)
	for i := range 5 {
		if _, err := c.Write(seq(i)); err != nil {
			t.Fatal(err)
		}
	}
	// 0 1 2 3 4 -> 1 0 3 2 4 (the odd one out after the timeout).
	eventually(t, "all five datagrams", func() bool { return len(up.received()) == 5 })
	var order []uint32
	for _, p := range up.received() {
		order = append(order, binary.BigEndian.Uint32(p))
	}
	want := []uint32{1, 0, 3, 2, 4}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if st := r.Stats().Up; st.Reordered != 3 {
		t.Errorf("reordered = %d, want 3", st.Reordered)
	}
}

func TestDuplicate(t *testing.T) {
	up := newSink(t, false)
	r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String()})
	if err := r.SetConfig(Config{Up: Impairment{Duplicate: 1}}); err != nil {
		t.Fatal(err)
	}
	c := dialRelay(t, r)
	for i := range 3 {
		if _, err := c.Write(seq(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "six datagrams", func() bool { return len(up.received()) == 6 })
	if st := r.Stats().Up; st.Duplicated != 3 || st.Forwarded != 6 {
		t.Errorf("stats %+v, want 3 duplicated and 6 forwarded", st)
	}
}

func TestSessionPerClient(t *testing.T) {
	up := newSink(t, true)
	r := newRelay(t, Options{Upstream: up.conn.LocalAddr().String()})
	a, b := dialRelay(t, r), dialRelay(t, r)
	for _, c := range []*net.UDPConn{a, b} {
		want := []byte(c.LocalAddr().String())
		got, err := roundTrip(c, want, 5*time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round trip from %s: %q, %v", c.LocalAddr(), got, err)
		}
	}
	if n := r.Stats().Sessions; n != 2 {
		t.Errorf("sessions = %d, want 2", n)
	}
}

func TestControlAPI(t *testing.T) {
	up := newSink(t, true)
	r := newRelay(t, Options{})
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	cl := NewClient(srv.URL)
	ctx := context.Background()

	// No upstream yet: datagrams are counted as errors, not forwarded.
	c := dialRelay(t, r)
	if _, err := roundTrip(c, []byte("x"), 100*time.Millisecond); err == nil {
		t.Fatal("echo without an upstream")
	}

	want := Config{
		Upstream: up.conn.LocalAddr().String(),
		Up:       Impairment{Drop: 0.1, Delay: Duration(20 * time.Millisecond), Jitter: Duration(5 * time.Millisecond)},
		Down:     Impairment{Duplicate: 0.5, Reorder: 0.25},
	}
	if err := cl.SetConfig(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := cl.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("config %+v, want %+v", got, want)
	}

	if err := cl.SetConfig(ctx, Symmetric(Impairment{Drop: 2, Delay: Duration(-time.Second)})); err == nil ||
		!strings.Contains(err.Error(), "drop must be in [0,1]") || !strings.Contains(err.Error(), "delay must not be negative") {
		t.Errorf("invalid config: err = %v, want both problems reported", err)
	}
	resp, err := http.Post(srv.URL+"/config", "application/json", strings.NewReader(`{"up":{"dorp":0.5}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400", resp.StatusCode)
	}
	if err := cl.Partition(ctx, "sideways"); err == nil {
		t.Error("partition accepted a bad direction")
	}

	if err := cl.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, []byte("y"), 5*time.Second); err != nil {
		t.Fatalf("round trip after reset: %v", err)
	}
	if err := cl.Partition(ctx, Both); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, []byte("z"), 200*time.Millisecond); err == nil {
		t.Fatal("echo through a partition")
	}
	if err := cl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c, []byte("w"), 5*time.Second); err != nil {
		t.Fatalf("round trip after heal: %v", err)
	}
	st, err := cl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Up.Partitioned != 1 || st.Up.Forwarded != 2 {
		t.Errorf("stats %+v, want 1 partitioned and 2 forwarded up", st.Up)
	}
}
