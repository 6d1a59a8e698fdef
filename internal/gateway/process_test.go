package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestMain lets the test binary double as a gateway process: with
// BPM_TEST_GATEWAY_CHILD=1 it runs `bpm gateway`'s core from BPM_GATEWAY_*
// and exits when signalled.
func TestMain(m *testing.M) {
	if os.Getenv("BPM_TEST_GATEWAY_CHILD") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		cfg, err := gateway.ConfigFromEnv(os.Getenv)
		if err == nil {
			err = gateway.Run(ctx, cfg, testLogger(nil))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gateway child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild runs a gateway in a separate process.
func startChild(t *testing.T, hub *tunnel.Hub, key tunnel.PrivateKey) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"BPM_TEST_GATEWAY_CHILD=1",
		gateway.EnvHubEndpoint+"="+hub.Endpoint(),
		gateway.EnvHubPublicKey+"="+hub.PublicKey().String(),
		gateway.EnvPrivateKey+"="+key.Reveal(),
		gateway.EnvAddress+"="+gwAddr.String()+"/16",
		gateway.EnvAllow+"=127.0.0.0/8",
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestGatewayProcessSurvivesRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes and waits for recoveries")
	}
	hubKey, gwKey := mustKey(t), mustKey(t)
	store := &tunnel.MemStore{}
	hub := startHub(t, hubKey, ":0", store)
	peers := []tunnel.Peer{{Name: "aws", PublicKey: gwKey.Public(), Address: gwAddr}}
	if err := hub.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	inst := instance(t, "served")
	probe := func(h *tunnel.Hub) func() error {
		return func() error {
			body, err := get(client(h, "aws"), "http://"+inst)
			if err == nil && body != "served" {
				return fmt.Errorf("body %q", body)
			}
			return err
		}
	}
	child := startChild(t, hub, gwKey)
	d := eventually(t, 20*time.Second, "request through a gateway process", probe(hub))
	t.Logf("first request served %v after the gateway process started", d)

	// Gateway killed without a goodbye, then started again with the same key.
	child.Process.Kill()
	child.Wait()
	if err := probe(hub)(); err == nil {
		t.Fatal("request succeeded with the gateway process dead")
	}
	startChild(t, hub, gwKey)
	d = eventually(t, 30*time.Second, "recovery after a gateway restart", probe(hub))
	t.Logf("gateway restart: serving again %v after the new process started", d)

	// Hub restarted on the same port and key (the manager restarting).
	port := hub.ListenPort()
	time.Sleep(200 * time.Millisecond) // let the hub's endpoint memory see the new gateway
	hub.Close()
	hub2 := startHub(t, hubKey, fmt.Sprintf(":%d", port), store)
	if err := hub2.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, 60*time.Second, "recovery after a hub restart", probe(hub2))
	t.Logf("hub restart (endpoint remembered): serving again %v after the new hub started", d)

	// Hub restarted without any memory of endpoints: only the gateway's own
	// probe and WireGuard's timers bring the tunnel back.
	hub2.Close()
	hub3 := startHub(t, hubKey, fmt.Sprintf(":%d", port), nil)
	if err := hub3.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, 60*time.Second, "recovery after a hub restart with no remembered endpoint", probe(hub3))
	t.Logf("hub restart (endpoint forgotten): serving again %v after the new hub started", d)
}
