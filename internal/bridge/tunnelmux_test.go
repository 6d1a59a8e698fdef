package bridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// The mux is tested on loopback TCP, where the whole of 127.0.0.0/8 is this
// host: a dial bound to 127.0.0.2 arrives with that remote address, as a
// connection from a gateway arrives with its tunnel address on the hub's
// netstack. peerOf names the remotes, as tunnel.Hub.PeerByAddress does.
var (
	awsGW = netip.MustParseAddr("127.0.0.2")
	gcpGW = netip.MustParseAddr("127.0.0.3")
	noGW  = netip.MustParseAddr("127.0.0.4") // no peer has this address
)

func startMux(t *testing.T) (*TunnelMux, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := map[netip.Addr]string{awsGW: "aws", gcpGW: "gcp"}
	x := NewTunnelMux(ln, func(a netip.Addr) (string, bool) { n, ok := peers[a]; return n, ok }, nil)
	go x.Serve()
	t.Cleanup(func() { x.Close() })
	return x, ln.Addr().String()
}

// dialFrom connects from src and sends raw as the first bytes.
func dialFrom(t *testing.T, addr string, src netip.Addr, raw []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 3 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	return c
}

func request(t *testing.T, id string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tunnel.WriteRelayRequest(&b, id); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// reply reads the mux's answer: status and message.
func reply(t *testing.T, c net.Conn) (tunnel.RelayStatus, string) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	msg := make([]byte, h[1])
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("read reply message: %v", err)
	}
	return tunnel.RelayStatus(h[0]), string(msg)
}

// accepts collects what l accepts, so a test can check that nothing came.
func accepts(l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	return ch
}

func mustListener(t *testing.T, x *TunnelMux, id, gw string) net.Listener {
	t.Helper()
	l, err := x.Listener(id, gw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func expectNone(t *testing.T, ch <-chan net.Conn, what string) {
	t.Helper()
	select {
	case c, ok := <-ch:
		if ok {
			c.Close()
			t.Fatalf("%s: a connection reached the instance's listener", what)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func TestTunnelMuxRoutesByInstanceID(t *testing.T) {
	x, addr := startMux(t)
	a := accepts(mustListener(t, x, "inst-a", "aws"))
	b := accepts(mustListener(t, x, "inst-b", "aws"))

	for _, tc := range []struct {
		id   string
		want <-chan net.Conn
		not  <-chan net.Conn
	}{{"inst-b", b, a}, {"inst-a", a, b}} {
		c := dialFrom(t, addr, awsGW, request(t, tc.id))
		if st, msg := reply(t, c); st != tunnel.RelayOK || msg != "" {
			t.Fatalf("%s: reply %d %q, want OK", tc.id, st, msg)
		}
		var got net.Conn
		select {
		case got = <-tc.want:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: its listener accepted nothing", tc.id)
		}
		defer got.Close()
		// After OK the connection is the instance's byte stream, both ways.
		if _, err := c.Write([]byte("ping " + tc.id)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("ping "+tc.id))
		_ = got.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "ping "+tc.id {
			t.Fatalf("%s: instance read %q, %v", tc.id, buf, err)
		}
		got.Write([]byte("pong"))
		buf = buf[:4]
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("%s: gateway read %q, %v", tc.id, buf, err)
		}
		expectNone(t, tc.not, tc.id+" routed to the other instance")
	}
}

// TestTunnelMuxRefusals: another remote's gateway naming an instance, a
// source that is no gateway at all, an unknown id and a closed instance all
// get the same answer, byte for byte, and none reaches a listener.
func TestTunnelMuxRefusals(t *testing.T) {
	x, addr := startMux(t)
	onGCP := accepts(mustListener(t, x, "inst-gcp", "gcp"))
	onAWS := accepts(mustListener(t, x, "inst-aws", "aws"))
	closed := mustListener(t, x, "inst-gone", "aws")
	closed.Close()

	type answer struct {
		st  tunnel.RelayStatus
		msg string
	}
	var first *answer
	for _, tc := range []struct {
		name string
		src  netip.Addr
		id   string
	}{
		{"another remote's gateway", awsGW, "inst-gcp"},
		{"the other way round", gcpGW, "inst-aws"},
		{"not a gateway", noGW, "inst-aws"},
		{"unknown id", awsGW, "inst-nope"},
		{"closed instance", awsGW, "inst-gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, addr, tc.src, request(t, tc.id))
			st, msg := reply(t, c)
			if st != tunnel.RelayForbidden {
				t.Fatalf("reply %d %q, want RelayForbidden", st, msg)
			}
			if first == nil {
				first = &answer{st, msg}
			} else if (answer{st, msg}) != *first {
				t.Errorf("answer %d %q differs from %d %q: a gateway could tell refusals apart", st, msg, first.st, first.msg)
			}
			// The mux closes a refused connection.
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("refused connection still open: %d, %v", n, err)
			}
		})
	}
	expectNone(t, onGCP, "refused request")
	expectNone(t, onAWS, "refused request")

}

// TestTunnelMuxMalformedHeader sends headers the mux must refuse without
// panicking, and checks it keeps serving well-formed ones afterwards.
func TestTunnelMuxMalformedHeader(t *testing.T) {
	x, addr := startMux(t)
	inst := accepts(mustListener(t, x, "inst-a", "aws"))
	for _, tc := range []struct {
		name string
		raw  []byte
		half bool // close the write side: a header cut short
	}{
		{"bad magic", []byte("BPMX\x01\x06inst-a"), false},
		{"bad version", []byte("BPMR\x09\x06inst-a"), false},
		{"empty id", []byte("BPMR\x01\x00"), false},
		{"http instead", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"cut in the header", []byte("BPM"), true},
		{"cut in the id", []byte("BPMR\x01\x06ins"), true},
		{"nothing at all", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, addr, awsGW, tc.raw)
			if tc.half {
				c.(*net.TCPConn).CloseWrite()
			}
			if st, msg := reply(t, c); st != tunnel.RelayBadRequest {
				t.Fatalf("reply %d %q, want RelayBadRequest", st, msg)
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("refused connection still open: %d, %v", n, err)
			}
		})
	}
	expectNone(t, inst, "malformed header")

	c := dialFrom(t, addr, awsGW, request(t, "inst-a"))
	if st, msg := reply(t, c); st != tunnel.RelayOK {
		t.Fatalf("after malformed headers: reply %d %q, want OK", st, msg)
	}
	select {
	case got := <-inst:
		got.Close()
	case <-time.After(3 * time.Second):
		t.Fatal("after malformed headers: nothing accepted")
	}
}

func TestTunnelMuxListenerLifecycle(t *testing.T) {
	x, _ := startMux(t)
	for _, tc := range []struct{ id, gw string }{{"", "aws"}, {"inst", ""}, {string(bytes.Repeat([]byte{'i'}, 256)), "aws"}} {
		if _, err := x.Listener(tc.id, tc.gw); err == nil {
			t.Errorf("Listener(%d-byte id, %q): no error", len(tc.id), tc.gw)
		}
	}
	l := mustListener(t, x, "inst", "aws")
	if _, err := x.Listener("inst", "aws"); err == nil {
		t.Fatal("a second listener for one instance was accepted")
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	l2 := mustListener(t, x, "inst", "gcp") // the id is free again
	x.Close()
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after the mux closed: %v, want net.ErrClosed", err)
	}
}
