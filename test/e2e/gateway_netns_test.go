//go:build linux && !bpm_noremote

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestIntegrationGatewayInNetns is the issue's "a gateway in a network
// namespace serves an instance through the tunnel": the real `bpm gateway`
// process runs inside a namespace of its own (`ip netns exec`), configured
// by a file as an operator would, dials the hub at the host's end of a veth
// pair, and forwards the hub's connections to an HTTP server on the
// namespace's loopback.
//
// The hub is package tunnel's Hub in this test process: the same code the
// manager runs, used directly because the manager offers no command that
// relays an arbitrary connection through a gateway (its health check of a
// gateway, over the tunnel, is covered by TestIntegrationTunnelExportPeer
// and TestIntegrationWireGuardInterop).
//
// So that a wrong turn cannot pass, the host's loopback serves a decoy on
// the same port: only a gateway that dials inside its own namespace
// returns the namespace server's answer.
func TestIntegrationGatewayInNetns(t *testing.T) {
	ns := newNetns(t, "bpmte-gwn", "bpmte-gwn0", netip.MustParsePrefix("10.213.50.4/30"))
	var (
		hubAddr = netip.MustParseAddr("10.98.0.1")
		gwAddr  = netip.MustParseAddr("10.98.0.2")
	)
	hubKey, err := tunnel.GeneratePrivateKey()
	must(t, err)
	gwKey, err := tunnel.GeneratePrivateKey()
	must(t, err)
	hub, err := tunnel.NewHub(context.Background(), tunnel.HubConfig{
		PrivateKey: hubKey, Address: hubAddr, ListenAddr: ":0", Store: &tunnel.MemStore{},
	})
	must(t, err)
	t.Cleanup(func() { hub.Close() })
	must(t, hub.SetPeers([]tunnel.Peer{{Name: "netns", PublicKey: gwKey.Public(), Address: gwAddr}}))
	hubEndpoint := netip.AddrPortFrom(ns.hostIP, hub.ListenPort())

	// The decoy on the host's loopback, and the real instance on the same
	// port of the namespace's loopback.
	decoy, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	serveText(t, decoy, "the host's loopback: wrong namespace")
	instAddr := decoy.Addr().String()
	nonce := fmt.Sprintf("served inside %s, %d", ns.name, time.Now().UnixNano())
	var inst net.Listener
	must(t, ns.do(func() (err error) {
		inst, err = net.Listen("tcp", instAddr)
		return err
	}))
	serveText(t, inst, nonce)

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gateway.key")
	must(t, os.WriteFile(keyFile, []byte(gwKey.Reveal()+"\n"), 0o600))
	cfgFile := filepath.Join(dir, "gateway.toml")
	must(t, os.WriteFile(cfgFile, fmt.Appendf(nil, `hub_endpoint = %q
hub_public_key = %q
hub_address = %q
private_key_file = %q
address = "%s/16"
allow = ["127.0.0.0/8"]
`, hubEndpoint, hub.PublicKey(), hubAddr, keyFile, gwAddr), 0o600))
	gw := ns.start(filepath.Join(dir, "gateway.log"), nil, bpmBin, "gateway", "--config", cfgFile)

	hc := &http.Client{Transport: &http.Transport{DialContext: hub.Via("netns").DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	start := time.Now()
	var body string
	for {
		body, err = getBody(hc, "http://"+instAddr+"/")
		if err == nil {
			break
		}
		if gw.exited() {
			b, _ := os.ReadFile(gw.log)
			t.Fatalf("bpm gateway exited: %v\n%s", gw.err, b)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no answer through the gateway in %s within 30s: %v", ns.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("instance in %s served through the tunnel %v after the gateway started", ns.name, time.Since(start).Round(time.Millisecond))
	if body != nonce {
		t.Fatalf("through the gateway: %q, want the namespace's instance (%q)", body, nonce)
	}

	// The hub saw the gateway come from the namespace's side of the veth.
	ps, err := hub.PeerStats()
	must(t, err)
	if len(ps) != 1 || ps[0].LastHandshake.IsZero() {
		t.Fatalf("hub peers: %+v", ps)
	}
	if ap, err := netip.ParseAddrPort(ps[0].Endpoint); err != nil || ap.Addr() != ns.nsIP {
		t.Errorf("hub sees the gateway at %q, want the namespace's address %s", ps[0].Endpoint, ns.nsIP)
	}

	// The control channel answers too, and its instance check runs from
	// inside the namespace.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := gateway.NewClient(hub.DialTunnel, gwAddr)
	defer cc.CloseIdleConnections()
	st, err := cc.Healthz(ctx)
	if err != nil || st.Status != "ok" || st.PublicKey != gwKey.Public().String() {
		t.Errorf("gateway healthz: %+v, %v", st, err)
	}

	// SIGTERM: the gateway stops cleanly, and the instance is out of reach.
	if err := gw.stop(10 * time.Second); err != nil {
		t.Errorf("bpm gateway exit on SIGTERM: %v", err)
	}
	hc.Timeout = 2 * time.Second
	if _, err := getBody(hc, "http://"+instAddr+"/"); err == nil {
		t.Error("instance still reachable through the tunnel after the gateway stopped")
	}
	if b, _ := os.ReadFile(gw.log); strings.Contains(string(b), gwKey.Reveal()) {
		t.Error("the gateway's log holds its private key")
	}
}

// serveText serves body to every request on l until the test ends.
func serveText(t *testing.T, l net.Listener, body string) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}
