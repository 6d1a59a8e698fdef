//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestIntegrationTunnelExportPeer drives the hub as an operator would: a
// manager with an ssh remote configured opens no UDP port until `bpm tunnel
// export-peer` asks for the remote's config; a real `bpm gateway` process
// configured from nothing but that file completes a handshake with the
// manager's hub, and `bpm tunnel status` shows it healthy (the hub reached
// the gateway's HTTP control channel through the tunnel). After a manager
// restart the export is identical and the gateway is healthy again with no
// manual step.
func TestIntegrationTunnelExportPeer(t *testing.T) {
	e := newEnv(t)
	port := freeUDPPort(t)
	cfg := filepath.Join(e.root, "cfg", "config.toml")
	b, err := os.ReadFile(cfg)
	must(t, err)
	b = append(b, fmt.Appendf(nil, `
[hub]
listen = ":%d"

[remote.homelab]
type = "ssh"
hosts = ["homelab.example.org"]
user = "bpm"
`, port)...)
	must(t, os.WriteFile(cfg, b, 0o600))
	e.vars = append(e.vars, "BPM_KEYSTORE_PASSPHRASE=e2e passphrase")
	e.startManager()

	st := e.tunnelStatus()
	if st.Hub.Running || len(st.Peers) != 0 {
		t.Fatalf("hub up before any remote needs it: %+v", st)
	}
	// Nothing listens on the hub's port yet.
	if c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port)); err != nil {
		t.Fatalf("hub port %d taken before any remote needs it: %v", port, err)
	} else {
		c.Close()
	}

	file := filepath.Join(e.root, "homelab.conf")
	e.mustRun("tunnel", "export-peer", "homelab", "-o", file)
	fi, err := os.Stat(file)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("exported file mode %v, want 0600", fi.Mode().Perm())
	}
	text, err := os.ReadFile(file)
	must(t, err)
	wc, err := tunnel.ParseWGQuick(strings.NewReader(string(text)))
	if err != nil {
		t.Fatalf("export-peer wrote a file wg-quick parsing refuses: %v\n%s", err, text)
	}
	if len(wc.Peers) != 1 || len(wc.Addresses) != 1 {
		t.Fatalf("exported config: %+v", wc)
	}
	if ep := wc.Peers[0].Endpoint; ep != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Errorf("hub endpoint in the export %s, want the default 127.0.0.1:%d", ep, port)
	}

	e.startGateway(wc)
	e.waitPeerHealthy("homelab")

	if strings.Contains(e.managerLog(), wc.PrivateKey.Reveal()) {
		t.Error("the manager's log holds the exported private key")
	}
	if strings.Contains(e.mustRun("tunnel", "status", "-o", "json"), wc.PrivateKey.Reveal()) {
		t.Error("tunnel status output holds a private key")
	}

	e.stopManager(syscall.SIGTERM)
	e.startManager()
	again := e.mustRun("tunnel", "export-peer", "homelab")
	if again != string(text) {
		t.Errorf("export changed across a manager restart:\n%s\n---\n%s", text, again)
	}
	e.waitPeerHealthy("homelab")
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (e *env) tunnelStatus() api.TunnelStatus {
	e.t.Helper()
	var st api.TunnelStatus
	must(e.t, json.Unmarshal([]byte(e.mustRun("tunnel", "status", "-o", "json")), &st))
	return st
}

func (e *env) waitPeerHealthy(remote string) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last api.TunnelStatus
	for time.Now().Before(deadline) {
		last = e.tunnelStatus()
		for _, p := range last.Peers {
			if p.Remote == remote && p.Health == "ok" {
				return
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	e.t.Fatalf("peer %s not healthy in 60s: %+v", remote, last)
}

// startGateway runs `bpm gateway` configured from the exported file: the
// key goes into a 0600 file, the rest into the gateway's variables.
func (e *env) startGateway(wc *tunnel.WGQuickConfig) {
	e.t.Helper()
	keyFile := filepath.Join(e.root, "gateway.key")
	must(e.t, os.WriteFile(keyFile, []byte(wc.PrivateKey.Reveal()+"\n"), 0o600))
	p := wc.Peers[0]
	cmd := exec.Command(bpmBin, "gateway")
	cmd.Env = append(os.Environ(),
		"BPM_GATEWAY_HUB_ENDPOINT="+p.Endpoint,
		"BPM_GATEWAY_HUB_PUBLIC_KEY="+p.PublicKey.String(),
		"BPM_GATEWAY_HUB_ADDRESS="+p.AllowedIPs[0].Addr().String(),
		"BPM_GATEWAY_PRIVATE_KEY_FILE="+keyFile,
		"BPM_GATEWAY_ADDRESS="+wc.Addresses[0].Addr().String(),
		fmt.Sprintf("BPM_GATEWAY_MTU=%d", wc.MTU),
	)
	logf, err := os.Create(filepath.Join(e.root, "gateway.log"))
	must(e.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(e.t, cmd.Start())
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	e.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.root, "gateway.log"))
			e.t.Logf("gateway log:\n%s", b)
		}
	})
}
