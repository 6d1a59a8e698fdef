package authproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/bpm-project/bpm/internal/registry"
)

// h2cClient speaks HTTP/2 with prior knowledge over plain TCP.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func TestHTTP2PassThrough(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/h2?a=b", strings.NewReader("payload"))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), `"body":"payload"`) || e.up.count.Load() != 1 {
		t.Fatalf("h2c: %d proto %d %s", resp.StatusCode, resp.ProtoMajor, b)
	}
	// Refusals over HTTP/2 too.
	req, _ = http.NewRequest(http.MethodGet, e.url+"/h2", nil)
	resp, err = h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || e.up.count.Load() != 1 {
		t.Fatalf("h2c without token: %d", resp.StatusCode)
	}
}

func TestWebSocketPassThrough(t *testing.T) {
	e := newEnv(t, nil)
	// A WebSocket echo service behind the proxy.
	ws := &http.Server{Handler: websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) })}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go ws.Serve(ln)
	defer ws.Close()
	rec, _ := e.reg.Get(registry.ID{Main: 7})
	rec.UpstreamURL = "http://" + ln.Addr().String()
	e.reg.Put(context.Background(), rec)
	tok := e.token()

	dial := func(authz string) (*websocket.Conn, error) {
		cfg, _ := websocket.NewConfig(strings.Replace(e.url, "http", "ws", 1)+"/ws", "http://localhost/")
		if authz != "" {
			cfg.Header.Set("Authorization", authz)
		}
		return websocket.DialConfig(cfg)
	}
	c, err := dial("Bearer " + tok)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"hello", "through", "bpm"} {
		if err := websocket.Message.Send(c, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(c, &got); err != nil || got != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	if _, err := dial(""); err == nil {
		t.Fatal("websocket without a token was upgraded")
	}
}

// bearer is per-RPC credentials over plaintext (the proxy listener is
// plain h2c on loopback, as upstream's).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

func TestGRPCStreamingPassThrough(t *testing.T) {
	e := newEnv(t, nil)
	// A real gRPC service (health: unary + server streaming; reflection:
	// bidirectional streaming) behind the proxy, over h2c.
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md.Get("authorization")) != 0 || len(md.Get("x-request-id")) != 1 {
			t.Errorf("upstream metadata: %v", md)
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go gs.Serve(ln)
	defer gs.Stop()
	rec, _ := e.reg.Get(registry.ID{Main: 7})
	rec.UpstreamURL = "http://" + ln.Addr().String()
	e.reg.Put(context.Background(), rec)
	tok := e.token()

	conn, err := grpc.NewClient(strings.TrimPrefix(e.url, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary Check: %v %v", r, err)
	}
	// Server streaming: the first status, then a change pushed later.
	hs.SetServingStatus("echo", healthpb.HealthCheckResponse_SERVING)
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch 1: %v %v", m, err)
	}
	hs.SetServingStatus("echo", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch 2: %v %v", m, err)
	}
	// Bidirectional streaming: several requests and answers on one stream.
	rc, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := rc.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		m, err := rc.Recv()
		if err != nil || len(m.GetListServicesResponse().GetService()) < 2 {
			t.Fatalf("reflection: %v %v", m, err)
		}
	}
	rc.CloseSend()
	// Without a token the call fails with the proxy's 401 mapped by gRPC.
	bad, _ := grpc.NewClient(strings.TrimPrefix(e.url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer bad.Close()
	if _, err := healthpb.NewHealthClient(bad).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("gRPC call without a token went through")
	}
}
