package docker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
	"github.com/bpm-project/bpm/internal/tunnel"
)

var (
	bpmOnce sync.Once
	bpmPath string
	bpmErr  error
)

// bpmBinary builds bpm once per test run: the test binary is not bpm, and
// the gateway image must hold a static bpm.
func bpmBinary(t *testing.T) string {
	t.Helper()
	bpmOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bpm-docker-test-")
		if err != nil {
			bpmErr = err
			return
		}
		bpmPath = filepath.Join(dir, "bpm")
		cmd := exec.Command("go", "build", "-o", bpmPath, "./cmd/bpm")
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			bpmErr = fmt.Errorf("go build ./cmd/bpm: %v\n%s", err, out)
		}
	})
	if bpmErr != nil {
		t.Fatal(bpmErr)
	}
	return bpmPath
}

// TestIntegrationTunnel: a hub in the test, the gateway container dialing
// in from the engine, and the hub reaching an instance's HTTP server through
// it; the remote's last termination removes gateway and network.
func TestIntegrationTunnel(t *testing.T) {
	env := testenv.Require(t, "docker")
	if env.Docker.BridgeGateway == "" {
		// The docker component always exports it; without it the
		// environment is broken, and skipping would hide that in CI.
		t.Fatal("BPM_TEST_DOCKER_BRIDGE_GATEWAY unset although the docker component is up (scripts/testenv env docker)")
	}
	const remote = "conf-tunnel"
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	p, err := New(remote, c, Options{Getenv: noEnv, Progress: tWriter{t}, Logger: testLogger(t), GatewayBinary: bpmBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	cleanupRemote(t, p)
	t.Cleanup(func() { cleanupRemote(t, p) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	hubKey, gwKey := mustKey(t), mustKey(t)
	hub, err := tunnel.NewHub(ctx, tunnel.HubConfig{
		PrivateKey: hubKey, Address: netip.MustParseAddr("10.79.0.1"), ListenAddr: "0.0.0.0:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	gwAddr := netip.MustParseAddr("10.79.0.2")
	if err := hub.SetPeers([]tunnel.Peer{{Name: remote, PublicKey: gwKey.Public(), Address: gwAddr}}); err != nil {
		t.Fatal(err)
	}
	spec := provider.TunnelSpec{
		Remote:            remote,
		HubEndpoint:       net.JoinHostPort(env.Docker.BridgeGateway, strconv.Itoa(int(hub.ListenPort()))),
		HubPublicKey:      hub.PublicKey().String(),
		HubAddress:        "10.79.0.1",
		GatewayAddress:    gwAddr.String() + "/16",
		GatewayPrivateKey: gwKey.Reveal(),
	}
	if _, err := p.EstablishTunnel(ctx, spec); err != nil {
		t.Fatalf("EstablishTunnel: %v", err)
	}
	gw1, err := p.cli.containerInspect(ctx, p.gatewayName())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.EstablishTunnel(ctx, spec); err != nil {
		t.Fatalf("second EstablishTunnel: %v", err)
	}
	if gw2, err := p.cli.containerInspect(ctx, p.gatewayName()); err != nil || gw2.ID != gw1.ID {
		t.Fatalf("second EstablishTunnel replaced the gateway (%v)", err)
	}

	id := providertest.NewInstanceID()
	ref := provider.Ref{InstanceID: id, Remote: remote}
	if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: id, Remote: remote, Package: providertest.ContainerPackage(env.Docker.Image)(t)}); err != nil {
		t.Fatal(err)
	}
	var st provider.Status
	for st.State != provider.StateRunning {
		if st, err = p.Status(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("never running: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: hub.Via(remote).DialContext, DisableKeepAlives: true}}
	for {
		resp, err := hc.Get("http://" + st.Address + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if ctx.Err() != nil {
			var logs bytes.Buffer
			_ = p.cli.containerLogs(context.Background(), p.gatewayName(), false, 50, &logs)
			t.Fatalf("instance never reached through the tunnel: %v\ngateway logs:\n%s", err, logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}

	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := p.cli.containerInspect(ctx, p.gatewayName()); !isStatus(err, http.StatusNotFound) {
		t.Errorf("gateway left after the last instance: %v", err)
	}
	if _, err := p.cli.networkInspect(ctx, p.networkName()); !isStatus(err, http.StatusNotFound) {
		t.Errorf("network left after the last instance: %v", err)
	}
}

func mustKey(t *testing.T) tunnel.PrivateKey {
	t.Helper()
	k, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
