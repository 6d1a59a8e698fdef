package gateway_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/tunnel"
)

func TestHubReachesInstanceThroughGateway(t *testing.T) {
	hubKey, gwKey := mustKey(t), mustKey(t)
	hub := startHub(t, hubKey, ":0", nil)
	if err := hub.SetPeers([]tunnel.Peer{{Name: "aws", PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, gatewayConfig(hub, gwKey, gwAddr))
	addr := instance(t, "hello from inside")
	c := client(hub, "aws")
	eventually(t, 10*time.Second, "request through the tunnel", func() error {
		body, err := get(c, "http://"+addr+"/")
		if err == nil && body != "hello from inside" {
			t.Fatalf("body = %q", body)
		}
		return err
	})

	// The control channel answers on the gateway's tunnel address.
	cc := gateway.NewClient(hub.DialTunnel, gwAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cc.Healthz(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "ok" || st.PublicKey != gwKey.Public().String() || st.LastHandshake.IsZero() {
		t.Errorf("healthz = %+v", st)
	}
	res, err := cc.InstanceHealth(ctx, health.Spec{Address: addr, HTTPPath: "/"})
	if err != nil || !res.Healthy || res.Kind != "http" {
		t.Errorf("instance health = %+v, %v", res, err)
	}
	res, err = cc.InstanceHealth(ctx, health.Spec{Address: "127.0.0.1:1"})
	if err != nil || res.Healthy {
		t.Errorf("health of a closed port = %+v, %v; want unhealthy", res, err)
	}
	if _, err := cc.InstanceHealth(ctx, health.Spec{Address: "192.0.2.1:80"}); err == nil {
		t.Error("health check of a forbidden address succeeded")
	}

	// Targets outside the allow list are refused with a clear error.
	_, err = hub.Via("aws").DialContext(ctx, "tcp", "192.0.2.1:80")
	if !errors.Is(err, tunnel.ErrRelayForbidden) {
		t.Errorf("dial forbidden target: err = %v, want ErrRelayForbidden", err)
	}
	_, err = hub.Via("aws").DialContext(ctx, "tcp", "127.0.0.1:1")
	if !errors.Is(err, tunnel.ErrRelayDialFailed) {
		t.Errorf("dial closed port: err = %v, want ErrRelayDialFailed", err)
	}
	ps, err := hub.PeerStats()
	if err != nil || len(ps) != 1 || ps[0].Name != "aws" || ps[0].RxBytes == 0 || ps[0].LastHandshake.IsZero() || ps[0].Endpoint == "" {
		t.Errorf("peer stats = %+v, %v", ps, err)
	}
	_ = gw
}
