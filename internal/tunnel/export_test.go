package tunnel_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/tunnel"
)

var update = flag.Bool("update", false, "rewrite golden files")

func exportSample(t *testing.T) []byte {
	t.Helper()
	priv, _ := tunnel.ParsePrivateKey(wgPriv)
	hub, _ := tunnel.ParsePublicKey("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
	var buf bytes.Buffer
	err := tunnel.ExportPeerConfig(&buf, tunnel.PeerConfig{
		Name: "homelab", PrivateKey: priv, Address: netip.MustParseAddr("10.77.0.7"),
		HubPublicKey: hub, HubEndpoint: "hub.example.com:51820", HubAddress: netip.MustParseAddr("10.77.0.1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportPeerConfigGolden(t *testing.T) {
	got := exportSample(t)
	golden := filepath.Join("testdata", "export-peer.golden.conf")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("export differs from %s:\n%s", golden, got)
	}
	c, err := tunnel.ParseWGQuick(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if c.PrivateKey.Reveal() != wgPriv || len(c.Peers) != 1 || c.Peers[0].Endpoint != "hub.example.com:51820" ||
		c.Peers[0].AllowedIPs[0].String() != "10.77.0.1/32" || c.Peers[0].Keepalive.Seconds() != 25 || c.MTU != 1420 {
		t.Errorf("parsed back = %+v", c)
	}
}

func TestParseWGQuickRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[Interface]\nPrivateKey = " + wgPriv + "\nListenPrt = 1\n", "line 3: unknown key listenprt"},
		{"[Interface]\nPrivateKey = " + wgPriv + "\n[Peers]\n", "line 3: unknown section"},
		{"[Interface]\nPrivateKey = " + wgPriv + "\nMTU = 1\nMTU = 2\n", "line 4: mtu set twice"},
		{"[Interface]\nPrivateKey = x\n", "line 2: privatekey"},
		{"[Interface]\nPrivateKey = " + wgPriv + "\n[Peer]\nAllowedIPs = 10.0.0.0/33\n", "line 4: allowedips"},
		{"[Peer]\nPublicKey = " + wgPub + "\n", "no [Interface]"},
	} {
		_, err := tunnel.ParseWGQuick(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseWGQuick(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestExportParsedByWG runs Debian's wireguard-tools on the export: wg-quick
// strip turns it into wg(8) syntax and `wg pubkey` confirms the key. Setting
// a device needs root and a device; the interop test in the test
// environment does that.
func TestExportParsedByWG(t *testing.T) {
	wgq, err1 := exec.LookPath("wg-quick")
	wg, err2 := exec.LookPath("wg")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("wg/wg-quick not installed (apt-get install -y wireguard-tools)")
		}
		t.Skip("wg/wg-quick not installed; apt-get install -y wireguard-tools")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bpm0.conf")
	if err := os.WriteFile(conf, exportSample(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wgq, "strip", conf).CombinedOutput()
	if err != nil {
		t.Fatalf("wg-quick strip: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"PrivateKey = " + wgPriv, "Endpoint = hub.example.com:51820", "AllowedIPs = 10.77.0.1/32", "PersistentKeepalive = 25"} {
		if !strings.Contains(s, want) {
			t.Errorf("wg-quick strip output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "Address") || strings.Contains(s, "MTU") {
		t.Errorf("wg-quick strip kept wg-quick-only keys:\n%s", s)
	}
	cmd := exec.Command(wg, "pubkey")
	cmd.Stdin = strings.NewReader(wgPriv + "\n")
	pub, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(pub)) != wgPub {
		t.Errorf("wg pubkey = %q, %v; want %s", pub, err, wgPub)
	}
}
