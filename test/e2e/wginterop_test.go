//go:build linux && !bpm_noremote

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/testenv"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// TestIntegrationWireGuardInterop proves bpm speaks standard WireGuard: a
// real manager (its hub is userspace wireguard-go on a gVisor netstack)
// and, on the other end, nothing of bpm at all: the wireguard-go daemon in
// TUN mode in a network namespace, configured by Debian's wg-quick and wg
// from the file `bpm tunnel export-peer` wrote, with the kernel's own
// TCP/IP stack behind the TUN device.
//
// Traffic both ways, each observed by the side that did not send it:
//
//   - hub -> peer: the manager checks a peer's health by an HTTP GET of
//     /healthz on the peer's tunnel address, port tunnel.ControlPort. A
//     service listening there inside the namespace (on the kernel's stack,
//     bound to the address wg-quick's Address= names) answers it. `bpm
//     tunnel status` then says "ok", and the service saw the request come
//     from the hub's tunnel address, which exists only inside the manager.
//   - peer -> hub: a TCP connection from the namespace to the hub's tunnel
//     address is refused: the reset comes from the hub's netstack, through
//     the tunnel (without the tunnel the SYN would go unanswered).
//
// The manager's status also shows the peer's endpoint as the namespace's
// veth address, and `wg show` in the namespace a handshake and bytes both
// ways.
func TestIntegrationWireGuardInterop(t *testing.T) {
	requireRoot(t)
	wg := testenv.Require(t, "wg").WireGuard()
	wgQuick, err := exec.LookPath(filepath.Join(filepath.Dir(wg.WG), "wg-quick"))
	if err != nil {
		t.Fatalf("wg-quick not beside %s: %v (scripts/testenv up wg installs wireguard-tools)", wg.WG, err)
	}
	const ifname = "bpmte-wgi" // also names wireguard-go's UAPI socket, which is not per namespace
	ns := newNetns(t, "bpmte-wgi", "bpmte-wgi0", netip.MustParsePrefix("10.213.50.0/30"))

	e := newEnv(t)
	port := freeUDPPort(t)
	cfg := filepath.Join(e.root, "cfg", "config.toml")
	b, err := os.ReadFile(cfg)
	must(t, err)
	b = append(b, fmt.Appendf(nil, `
[hub]
listen = ":%d"
endpoint = "%s"

[remote.homelab]
type = "ssh"
hosts = ["homelab.example.org"]
user = "bpm"
`, port, netip.AddrPortFrom(ns.hostIP, uint16(port)))...)
	must(t, os.WriteFile(cfg, b, 0o600))
	e.vars = append(e.vars, "BPM_KEYSTORE_PASSPHRASE=e2e passphrase")
	e.startManager()

	// wg-quick takes the interface name from the file name.
	file := filepath.Join(e.root, ifname+".conf")
	e.mustRun("tunnel", "export-peer", "homelab", "-o", file)
	text, err := os.ReadFile(file)
	must(t, err)
	wc, err := tunnel.ParseWGQuick(strings.NewReader(string(text)))
	must(t, err)
	if len(wc.Addresses) != 1 || len(wc.Peers) != 1 || len(wc.Peers[0].AllowedIPs) != 1 {
		t.Fatalf("exported config is not one address and one peer:\n%s", text)
	}
	peerAddr := wc.Addresses[0].Addr()
	hubAddr := wc.Peers[0].AllowedIPs[0].Addr()

	// wireguard-go in TUN mode, in the foreground, inside the namespace.
	wgd := ns.start(filepath.Join(e.root, "wireguard-go.log"), []string{"LOG_LEVEL=verbose"}, wg.WireGuardGo, "-f", ifname)
	sock := filepath.Join("/var/run/wireguard", ifname+".sock")
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, serr := os.Stat(sock)
		if serr == nil && exec.Command("ip", "-n", ns.name, "link", "show", ifname).Run() == nil {
			break
		}
		if wgd.exited() || time.Now().After(deadline) {
			b, _ := os.ReadFile(wgd.log)
			t.Fatalf("wireguard-go did not bring up %s in %s:\n%s", ifname, ns.name, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// What wg-quick up would do, step by step: wg-quick strip keeps the
	// keys and peers for wg; Address, MTU and the routes for AllowedIPs go
	// to ip. (wg-quick up itself cannot be used: it would start its own
	// wireguard-go and touch the host's DNS settings.)
	stripped := filepath.Join(e.root, "stripped.conf")
	must(t, os.WriteFile(stripped, []byte(mustCmd(t, wgQuick, "strip", file)), 0o600))
	ns.run(wg.WG, "setconf", ifname, stripped)
	mustCmd(t, "ip", "-n", ns.name, "addr", "add", wc.Addresses[0].String(), "dev", ifname)
	mustCmd(t, "ip", "-n", ns.name, "link", "set", ifname, "mtu", strconv.Itoa(wc.MTU), "up")
	for _, p := range wc.Peers[0].AllowedIPs {
		mustCmd(t, "ip", "-n", ns.name, "route", "add", p.String(), "dev", ifname)
	}

	// The service on the peer's tunnel address: a gateway-like /healthz
	// that records who asked.
	var mu sync.Mutex
	var askedBy []string
	var l net.Listener
	must(t, ns.do(func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(peerAddr, tunnel.ControlPort).String())
		return err
	}))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		askedBy = append(askedBy, r.Method+" "+r.URL.Path+" from "+r.RemoteAddr)
		mu.Unlock()
		json.NewEncoder(w).Encode(gateway.Status{Status: "ok", Address: peerAddr.String()})
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	// hub -> peer, as the manager sees it.
	e.waitPeerHealthy("homelab")
	mu.Lock()
	asked := strings.Join(askedBy, "\n")
	mu.Unlock()
	if !strings.Contains(asked, "GET /healthz from "+hubAddr.String()+":") {
		t.Errorf("the service in the namespace was not asked by the hub's tunnel address %s; it saw:\n%s", hubAddr, asked)
	}
	endpoint := ""
	for _, p := range e.tunnelStatus().Peers {
		if p.Remote == "homelab" {
			endpoint = p.Endpoint
		}
	}
	if ap, err := netip.ParseAddrPort(endpoint); err != nil || ap.Addr() != ns.nsIP {
		t.Errorf("hub sees the peer at %q, want the namespace's address %s", endpoint, ns.nsIP)
	}

	// peer -> hub: the hub's netstack answers a SYN to a closed port with
	// a reset, so the kernel in the namespace reports "refused"; a dead
	// tunnel would time out instead.
	var dialErr error
	must(t, ns.do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(hubAddr, 1).String(), 10*time.Second)
		if c != nil {
			c.Close()
		}
		dialErr = err
		return nil
	}))
	if !errors.Is(dialErr, syscall.ECONNREFUSED) {
		t.Errorf("TCP from the namespace to the hub's tunnel address %s: %v, want connection refused by the hub's stack", hubAddr, dialErr)
	}

	// The standard tool's view of the same tunnel.
	dump := strings.Fields(strings.Split(strings.TrimSpace(ns.run(wg.WG, "show", ifname, "dump")), "\n")[1])
	// public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
	if len(dump) != 8 {
		t.Fatalf("wg show dump peer line: %q", dump)
	}
	if dump[0] != wc.Peers[0].PublicKey.String() || dump[2] != netip.AddrPortFrom(ns.hostIP, uint16(port)).String() {
		t.Errorf("wg shows peer %s at %s, want the hub %s at %s:%d", dump[0], dump[2], wc.Peers[0].PublicKey, ns.hostIP, port)
	}
	if dump[4] == "0" || dump[5] == "0" || dump[6] == "0" {
		t.Errorf("wg shows no handshake or no bytes both ways: handshake %s, rx %s, tx %s", dump[4], dump[5], dump[6])
	}
	t.Logf("wg show: handshake at %s, rx %s B, tx %s B", dump[4], dump[5], dump[6])

	// wireguard-go stops cleanly and removes its socket and interface.
	if err := wgd.stop(10 * time.Second); err != nil {
		t.Errorf("wireguard-go exit: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("wireguard-go left its UAPI socket %s behind: %v", sock, err)
	}
}
