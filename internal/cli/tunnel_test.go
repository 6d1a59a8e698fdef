package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
)

// runSub runs one of the tunnel/gateway commands under a root that carries
// the real persistent flags, so flag shadowing is tested as users hit it.
func runSub(t *testing.T, g *globals, mk func(*globals) *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g.streams = &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb}
	root := NewRootCommand(g.streams)
	// Swap the tree's own command for one bound to the test's globals.
	sub := mk(g)
	for _, c := range root.Commands() {
		if c.Name() == sub.Name() {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(sub)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// fakeManager serves handler on a unix socket and returns its path.
func fakeManager(t *testing.T, handler http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "m.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestTunnelStatusAndExport(t *testing.T) {
	hs := time.Now().Add(-3 * time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnel/peers", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(api.TunnelStatus{
			Hub:   api.TunnelHub{PublicKey: "HUB", Address: "10.77.0.1", Endpoint: "hub:51820"},
			Peers: []api.TunnelPeer{{Remote: "aws", Address: "10.77.0.2", Endpoint: "198.51.100.7:40000", LastHandshake: &hs, RxBytes: 1234, TxBytes: 99, Health: "ok"}},
		})
	})
	mux.HandleFunc("GET /v1/tunnel/peers/{remote}/config", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("remote") != "aws" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"error": api.Error{Code: api.CodeNotFound, Message: "no remote " + r.PathValue("remote")}})
			return
		}
		json.NewEncoder(w).Encode(api.TunnelPeerConfig{Remote: "aws", Config: "[Interface]\nPrivateKey = x\n"})
	})
	g := &globals{socket: fakeManager(t, mux)}
	out, _, err := runSub(t, g, newTunnelCommand, "tunnel", "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REMOTE", "aws", "10.77.0.2", "198.51.100.7:40000", "3s ago", "1234", "ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runSub(t, g, newTunnelCommand, "tunnel", "export-peer", "aws")
	if err != nil || out != "[Interface]\nPrivateKey = x\n" {
		t.Errorf("export-peer = %q, %v", out, err)
	}
	file := filepath.Join(t.TempDir(), "bpm0.conf")
	os.WriteFile(file, nil, 0o644)
	if _, _, err := runSub(t, g, newTunnelCommand, "tunnel", "export-peer", "aws", "-o", file); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("exported file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	_, _, err = runSub(t, g, newTunnelCommand, "tunnel", "export-peer", "nope")
	if ExitCode(err) != ExitNotFound {
		t.Errorf("unknown remote: exit %d (%v), want %d", ExitCode(err), err, ExitNotFound)
	}
}

func TestTunnelStatusWithoutEndpointReportsManagerError(t *testing.T) {
	// A manager without the tunnel routes (today's) answers 404.
	g := &globals{socket: fakeManager(t, http.NotFoundHandler())}
	_, _, err := runSub(t, g, newTunnelCommand, "tunnel", "status")
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("err = %v, want the manager's 404", err)
	}
	g = &globals{socket: filepath.Join(t.TempDir(), "none.sock")}
	_, _, err = runSub(t, g, newTunnelCommand, "tunnel", "status")
	if !errors.Is(err, api.ErrManagerUnreachable) {
		t.Errorf("err = %v, want ErrManagerUnreachable", err)
	}
}

func TestGatewayConfigErrors(t *testing.T) {
	for _, k := range []string{"BPM_GATEWAY_HUB_ENDPOINT", "BPM_GATEWAY_HUB_PUBLIC_KEY", "BPM_GATEWAY_PRIVATE_KEY", "BPM_GATEWAY_PRIVATE_KEY_FILE", "BPM_GATEWAY_ADDRESS"} {
		t.Setenv(k, "")
	}
	_, _, err := runSub(t, &globals{}, newGatewayCommand, "gateway")
	if ExitCode(err) != ExitInvalid || !strings.Contains(err.Error(), "BPM_GATEWAY_HUB_ENDPOINT: required") {
		t.Errorf("gateway without env: exit %d, %v", ExitCode(err), err)
	}
	// --config here is the gateway's file, not the operator config.
	f := filepath.Join(t.TempDir(), "gw.toml")
	os.WriteFile(f, []byte("hub_endpoint = \"h:1\"\nHub_Public_Key = \"x\"\n"), 0o600)
	_, _, err = runSub(t, &globals{}, newGatewayCommand, "gateway", "--config", f)
	if ExitCode(err) != ExitInvalid || !strings.Contains(err.Error(), "Hub_Public_Key: unknown key") {
		t.Errorf("gateway --config with a miscased key: exit %d, %v", ExitCode(err), err)
	}
}

func TestGatewayImageRefusesDynamicBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "img.tar")
	_, _, err := runSub(t, &globals{}, newGatewayCommand, "gateway", "image", "-o", out)
	if os.Getenv("CGO_ENABLED") == "0" {
		if err != nil {
			t.Errorf("static test binary: %v", err)
		}
		return
	}
	// `go test` builds with cgo here, so the test binary is dynamic.
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("err = %v, want a refusal naming CGO_ENABLED=0", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("a refused image left a file behind")
	}
}
