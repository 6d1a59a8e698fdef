package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/supervisor/testservice/bridgeservice"
)

// ownerHex is the wire sheet's secp256k1 test key (any 33-byte key would do).
const ownerHex = "020a1091341fe5664bfa1782d5e04779689068c916b04cb365ec3153755684d9a1"

// writeBridgePackage is writePackage for the service that registers itself
// through its bridge with api_key_prefix "tst_".
func (f *fixture) writeBridgePackage() (dir string, port int) {
	f.t.Helper()
	dir, port = f.writePackage(bridgeservice.Mode)
	b, err := os.ReadFile(filepath.Join(dir, "blueprint.toml"))
	if err != nil {
		f.t.Fatal(err)
	}
	s := strings.Replace(string(b), "[env]\n", fmt.Sprintf("[env]\n%s = \"tst_\"\n%s = %q\n",
		bridgeservice.EnvKeyPrefix, bridgeservice.EnvOwner, ownerHex), 1)
	if err := os.WriteFile(filepath.Join(dir, "blueprint.toml"), []byte(s), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return dir, port
}

func waitRegistered(t *testing.T, reg *registry.Registry, sid uint64) *registry.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := reg.Get(registry.ID{Main: sid})
		if err == nil && rec.ViaBridge {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %d never registered through its bridge (record %+v, %v)", sid, rec, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxyDo sends a request through the proxy with an optional bearer.
func proxyDo(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// exchange trades an API key for a token at the proxy.
func exchange(t *testing.T, proxyURL, key string) string {
	t.Helper()
	code, body := proxyDo(t, http.MethodPost, proxyURL+"v1/auth/exchange", key, "{}")
	if code != http.StatusOK {
		t.Fatalf("exchange: %d %s", code, body)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || !strings.HasPrefix(out.AccessToken, "v4.local.") {
		t.Fatalf("exchange reply %q: %v", body, err)
	}
	return out.AccessToken
}

func proxyURLOf(t *testing.T, c *api.Client) string {
	t.Helper()
	info, err := c.Info(ctxT(t))
	if err != nil || !strings.HasPrefix(info.ProxyURL, "http://127.0.0.1:") {
		t.Fatalf("info: %+v, %v", info, err)
	}
	return info.ProxyURL
}

// TestProxyBridgeEndToEnd: a real manager deploys a local service that
// registers itself through its bridge; an operator-minted key, exchanged
// for a token, reaches it through the manager's proxy; no token is 401; a
// manager restart brings the bridge back at the same path (re-registration
// works, the old token still does); revoke and terminate cut access.
func TestProxyBridgeEndToEnd(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, port := f.writeBridgePackage()
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if inst.ServiceID != 1 {
		t.Fatalf("service id %d", inst.ServiceID)
	}
	waitState(t, f.client, inst.ID, "running")
	rec := waitRegistered(t, f.m.Registry(), 1)
	if rec.InstanceID != inst.ID || rec.APIKeyPrefix != "tst_" || len(rec.Owners) != 1 ||
		rec.UpstreamURL != "http://127.0.0.1:"+itoa(port) {
		t.Fatalf("registered record = %+v", rec)
	}
	sock := filepath.Join(f.cfg.Manager.RuntimeDir, "svc-4-1", "svc-4-1.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bridge socket %s: %v %v", sock, fi, err)
	}
	// The health loop's route sync leaves the service's own record alone.
	time.Sleep(300 * time.Millisecond)
	if again, _ := f.m.Registry().Get(idOf(1)); !again.ViaBridge || again.APIKeyPrefix != "tst_" {
		t.Fatalf("record rewritten by the manager: %+v", again)
	}

	purl := proxyURLOf(t, f.client)
	if code, _ := proxyDo(t, http.MethodGet, purl+"hello", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}

	// Only services bpm runs get keys.
	other := uint64(99)
	if _, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &other}); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("key for a service bpm does not run: %v", err)
	}
	sid := uint64(1)
	created, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid, Label: "ci", TTL: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	key := created.APIKey.Reveal()
	if !strings.HasPrefix(key, "tst_"+created.KeyID[len("tst_"):]+".") || created.State != "active" ||
		created.ExpiresAt.Sub(created.CreatedAt) != 24*time.Hour {
		t.Fatalf("created = %+v (key prefix %q)", created, key[:4])
	}
	list, err := f.client.AuthKeys(ctx, &sid)
	if err != nil || len(list) != 1 || list[0].KeyID != created.KeyID || list[0].Label != "ci" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if b, _ := json.Marshal(list); strings.Contains(string(b), key[strings.IndexByte(key, '.')+1:]) {
		t.Fatal("list carries the secret")
	}

	tok := exchange(t, purl, key)
	if code, body := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusOK || !strings.Contains(body, "hello from bpm-test-service") {
		t.Fatalf("through the proxy: %d %q", code, body)
	}

	// Restart: the bridge is back at the same path, the route and the
	// token survive, and the service can register again.
	f.stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind by a stopped manager: %v", err)
	}
	f.start()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("bridge socket after restart: %v", err)
	}
	purl = proxyURLOf(t, f.client)
	if code, body := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusOK {
		t.Fatalf("old token after restart: %d %q", code, body)
	}
	bc, err := bridge.DialUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	if _, err := bc.Ping(ctx, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	reReg := &bridgepb.RegisterBlueprintServiceProxyRequest{
		ServiceId: 1, ApiKeyPrefix: "tst_", UpstreamUrl: "http://127.0.0.1:" + itoa(port),
		Owners: []*bridgepb.ServiceOwner{{KeyType: bridgepb.ServiceOwner_ECDSA, KeyBytes: rec.Owners[0].KeyBytes}},
	}
	if _, err := bc.RegisterBlueprintServiceProxy(ctx, reReg); err != nil {
		t.Fatalf("re-register after restart: %v", err)
	}
	reReg.ServiceId = 2
	if _, err := bc.RegisterBlueprintServiceProxy(ctx, reReg); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("register another service id on the instance's bridge: %v", err)
	}

	// Revoke: the token dies with its key.
	if k, err := f.client.RevokeAuthKey(ctx, created.KeyID); err != nil || k.State != "revoked" {
		t.Fatalf("revoke: %+v, %v", k, err)
	}
	if code, _ := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusUnauthorized {
		t.Fatalf("token of a revoked key: %d, want 401", code)
	}
	if _, err := f.client.RevokeAuthKey(ctx, "nope"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}

	// Terminate: the route goes, the service's keys are revoked (so the
	// proxy refuses the token before it looks for a route), the socket is
	// gone.
	created2, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid})
	if err != nil {
		t.Fatal(err)
	}
	tok2 := exchange(t, purl, created2.APIKey.Reveal())
	if _, err := f.client.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := proxyDo(t, http.MethodGet, purl+"hello", tok2, ""); code != http.StatusUnauthorized {
		t.Fatalf("after terminate: %d, want 401", code)
	}
	if _, err := f.m.Registry().Get(idOf(1)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("record after terminate: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("bridge socket after terminate: %v", err)
	}
	if _, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid}); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("key for a terminated service: %v", err)
	}
}

// TestProxyServiceWithoutBridge: a service that never registers still gets
// the manager's fallback route, so an operator key reaches it.
func TestProxyServiceWithoutBridge(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, f.client, inst.ID, "running")
	sid := inst.ServiceID
	created, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid})
	if err != nil {
		t.Fatal(err)
	}
	purl := proxyURLOf(t, f.client)
	tok := exchange(t, purl, created.APIKey.Reveal())
	if code, body := proxyDo(t, http.MethodGet, purl+"x", tok, ""); code != http.StatusOK || !strings.Contains(body, "hello from bpm-test-service") {
		t.Fatalf("through the proxy: %d %q", code, body)
	}
}

// TestProxyPortTaken: a taken proxy port is a startup error that names the
// address and the config key.
func TestProxyPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := newFixture(t)
	f.cfg.Proxy.Listen = ln.Addr().String()
	m, err := manager.New(context.Background(), manager.Options{Config: f.cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	err = m.ListenProxy(context.Background())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "[proxy] listen") {
		t.Fatalf("ListenProxy on a taken port: %v", err)
	}
	if m.Info().ProxyURL != "" {
		t.Fatal("proxy url without a listener")
	}
}

// TestDeployWithoutBridge: a bridge that cannot listen (its socket path is
// longer than a unix socket allows) does not fail the deploy; the instance
// runs, and its events say why it has no bridge.
func TestDeployWithoutBridge(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	// The manager's own socket path is already fixed; only the bridges'
	// base moves.
	f.cfg.Manager.RuntimeDir = filepath.Join(f.root, strings.Repeat("r", 100))
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	d := waitState(t, f.client, inst.ID, "running")
	found := false
	for _, e := range d.Events {
		found = found || (e.Kind == "bridge" && strings.Contains(e.Message, "longer than"))
	}
	if !found {
		t.Fatalf("no bridge event: %+v", d.Events)
	}
}

// TestKeysDieWithTheirService: an operator key is bound to a service id, so
// terminating the last instance that serves it revokes the key — it must
// not open whatever is deployed under that service id next, even another
// blueprint's instance. Service ids are unique across blueprints.
func TestKeysDieWithTheirService(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writeBridgePackage()
	first, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, f.client, first.ID, "running")
	waitRegistered(t, f.m.Registry(), first.ServiceID)
	sid := first.ServiceID
	created, err := f.client.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid})
	if err != nil {
		t.Fatal(err)
	}
	purl := proxyURLOf(t, f.client)
	tok := exchange(t, purl, created.APIKey.Reveal())
	if code, _ := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusOK {
		t.Fatalf("before terminate: %d", code)
	}

	// Another blueprint cannot take a live service id.
	other, _ := f.writePackage("http")
	otherBID := uint64(77)
	if _, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: other, ServiceID: &sid, BlueprintID: &otherBID}); !errors.Is(err, provider.ErrExists) {
		t.Fatalf("second blueprint on a live service id: %v", err)
	}

	if _, err := f.client.Terminate(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	keys, err := f.client.AuthKeys(ctx, &sid)
	if err != nil || len(keys) != 1 || keys[0].State != "revoked" {
		t.Fatalf("keys after terminate: %+v, %v", keys, err)
	}
	next, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: other, ServiceID: &sid, BlueprintID: &otherBID})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, f.client, next.ID, "running")
	if code, _ := proxyDo(t, http.MethodGet, purl+"hello", tok, ""); code != http.StatusUnauthorized {
		t.Fatalf("old token reaches the next service on the same id: %d, want 401", code)
	}
}
