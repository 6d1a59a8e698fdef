package authproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ChainSafe/go-schnorrkel"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/bpm-project/bpm/internal/registry"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// upstream is a real HTTP server on loopback that counts what reaches it
// and echoes the request it saw.
type upstream struct {
	srv   *httptest.Server
	count atomic.Int64
}

type seen struct {
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Query  string              `json:"query"`
	Host   string              `json:"host"`
	Proto  string              `json:"proto"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

func (u *upstream) handler(w http.ResponseWriter, r *http.Request) {
	u.count.Add(1)
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "upstream-must-not-win")
	json.NewEncoder(w).Encode(seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Proto, r.Header, string(b)})
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.handler))
	t.Cleanup(u.srv.Close)
	return u
}

type env struct {
	t     *testing.T
	reg   *registry.Registry
	srv   *Server
	url   string
	clock *clock
	up    *upstream
	ecdsa *secp256k1.PrivateKey
	sr    *schnorrkel.SecretKey
	srPub []byte
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	store := registry.NewMemStore()
	reg, err := registry.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := OpenKeyStore(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg, clock: &clock{t: time.Now()}, up: newUpstream(t)}
	cfg := Config{Registry: reg, Keys: keys, Now: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	e.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.srv.Serve(sctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; e.srv.Close() })
	e.url = "http://" + ln.Addr().String()

	e.ecdsa, _ = secp256k1.GeneratePrivateKey()
	sk, pk, _ := schnorrkel.GenerateKeypair()
	e.sr = sk
	pb := pk.Encode()
	e.srPub = pb[:]
	if err := reg.Create(ctx, &registry.Record{
		ServiceID: 7, APIKeyPrefix: "ak_", UpstreamURL: e.up.srv.URL,
		Owners: []registry.Owner{
			{KeyType: registry.KeyTypeEcdsa, KeyBytes: e.ecdsa.PubKey().SerializeCompressed()},
			{KeyType: registry.KeyTypeSr25519, KeyBytes: e.srPub},
		},
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) post(path, sid string, body any, hdr map[string]string) (int, []byte, http.Header) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if sid != "" {
		req.Header.Set("X-Service-Id", sid)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

type challengeResp struct {
	Challenge string `json:"challenge"`
	ExpiresAt int64  `json:"expires_at"`
}

func (e *env) challenge(sid string, kt string, pub []byte) challengeResp {
	e.t.Helper()
	code, body, _ := e.post("/v1/auth/challenge", sid, map[string]string{"pub_key": hex.EncodeToString(pub), "key_type": kt}, nil)
	if code != 200 {
		e.t.Fatalf("challenge: %d %s", code, body)
	}
	var c challengeResp
	json.Unmarshal(body, &c)
	return c
}

func (e *env) ecdsaPub() []byte { return e.ecdsa.PubKey().SerializeCompressed() }

func (e *env) signEcdsa(ch string) string {
	b, _ := hex.DecodeString(ch)
	return hex.EncodeToString(signEcdsa(e.ecdsa, b))
}

func (e *env) signSr(ch string) string {
	b, _ := hex.DecodeString(ch)
	sig, _ := e.sr.Sign(schnorrkel.NewSigningContext([]byte("substrate"), b))
	s := sig.Encode()
	return hex.EncodeToString(s[:])
}

func (e *env) verify(sid, kt string, pub []byte, c challengeResp, sig string, extra map[string]string) (int, map[string]any) {
	e.t.Helper()
	body := map[string]any{"pub_key": hex.EncodeToString(pub), "key_type": kt, "challenge": c.Challenge, "signature": sig, "expires_at": c.ExpiresAt}
	if extra != nil {
		body["additional_headers"] = extra
	}
	code, out, _ := e.post("/v1/auth/verify", sid, body, nil)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		e.t.Fatalf("verify body %q: %v", out, err)
	}
	return code, m
}

// apiKey runs challenge → sign → verify with the ECDSA owner.
func (e *env) apiKey(extra map[string]string) string {
	e.t.Helper()
	c := e.challenge("7", "Ecdsa", e.ecdsaPub())
	code, m := e.verify("7", "Ecdsa", e.ecdsaPub(), c, e.signEcdsa(c.Challenge), extra)
	if code != 201 || m["status"] != "Verified" {
		e.t.Fatalf("verify: %d %v", code, m)
	}
	return m["data"].(map[string]any)["api_key"].(string)
}

func (e *env) exchange(key string, body any) (int, map[string]any) {
	e.t.Helper()
	code, out, _ := e.post("/v1/auth/exchange", "", body, map[string]string{"Authorization": "Bearer " + key})
	var m map[string]any
	json.Unmarshal(out, &m)
	return code, m
}

func (e *env) token() string {
	e.t.Helper()
	code, m := e.exchange(e.apiKey(nil), map[string]any{})
	if code != 200 {
		e.t.Fatalf("exchange: %d %v", code, m)
	}
	return m["access_token"].(string)
}

func (e *env) get(path, authz string, hdr map[string]string) (int, *seen, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		if len(body) != 0 && resp.StatusCode != 502 {
			e.t.Errorf("refusal %d has a body: %q", resp.StatusCode, body)
		}
		return resp.StatusCode, nil, resp.Header
	}
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatalf("upstream body %q: %v", body, err)
	}
	return resp.StatusCode, &s, resp.Header
}

func TestFlowSecp256k1(t *testing.T) {
	e := newEnv(t, nil)
	key := e.apiKey(nil)
	// <prefix><11-char id>.<32-char secret>
	id, secret, _ := strings.Cut(key, ".")
	if !strings.HasPrefix(id, "ak_") || len(id) != 3+11 || len(secret) != 32 {
		t.Fatalf("api key shape: id %d chars, secret %d chars", len(id), len(secret))
	}
	code, m := e.exchange(key, map[string]any{})
	if code != 200 || m["token_type"] != "Bearer" || m["expires_in"].(float64) != 900 {
		t.Fatalf("exchange: %d %v", code, m)
	}
	tok := m["access_token"].(string)
	if !strings.HasPrefix(tok, "v4.local.") || strings.Count(tok, ".") != 2 {
		t.Fatalf("token shape %q", tok[:12])
	}
	code, s, h := e.get("/hello/world?x=1&y=2", "Bearer "+tok, nil)
	if code != 200 || s.Path != "/hello/world" || s.Query != "x=1&y=2" || e.up.count.Load() != 1 {
		t.Fatalf("proxied: %d %+v count %d", code, s, e.up.count.Load())
	}
	if rid := h.Get("X-Request-Id"); len(rid) != 36 || s.Header["X-Request-Id"][0] != rid || len(h.Values("X-Request-Id")) != 1 {
		t.Fatalf("x-request-id: response %v, upstream %v", h.Values("X-Request-Id"), s.Header["X-Request-Id"])
	}
	if _, ok := s.Header["Authorization"]; ok {
		t.Fatal("authorization reached the upstream")
	}
	// A client's sane x-request-id is kept.
	_, s, h = e.get("/", "Bearer "+tok, map[string]string{"X-Request-Id": "trace-123"})
	if h.Get("X-Request-Id") != "trace-123" || s.Header["X-Request-Id"][0] != "trace-123" {
		t.Fatal("client x-request-id not kept")
	}
}

func TestFlowSr25519(t *testing.T) {
	e := newEnv(t, nil)
	c := e.challenge("7", "Sr25519", e.srPub)
	code, m := e.verify("7", "Sr25519", e.srPub, c, e.signSr(c.Challenge), nil)
	if code != 201 {
		t.Fatalf("verify: %d %v", code, m)
	}
	key := m["data"].(map[string]any)["api_key"].(string)
	code, x := e.exchange(key, map[string]any{"ttl_seconds": 60})
	if code != 200 || x["expires_in"].(float64) != 60 {
		t.Fatalf("exchange: %d %v", code, x)
	}
	if code, _, _ := e.get("/sr", "Bearer "+x["access_token"].(string), nil); code != 200 || e.up.count.Load() != 1 {
		t.Fatalf("proxied: %d", code)
	}
}

func TestHeaderHygiene(t *testing.T) {
	e := newEnv(t, nil)
	tenant := strings.Repeat("ab", 16)
	key := e.apiKey(map[string]string{"X-User-Id": "alice", "x-tenant-id": "acme", "x-plan": "gold"})
	code, m := e.exchange(key, map[string]any{"additional_headers": map[string]string{"x-tenant-id": tenant}})
	if code != 200 {
		t.Fatalf("exchange: %d %v", code, m)
	}
	tok := m["access_token"].(string)
	_, s, _ := e.get("/h", "Bearer "+tok, map[string]string{
		"X-Tenant-Id": "evil", "X-Tenant-Role": "admin", "X-User-Id": "mallory", "X-User-Email": "m@x",
		"X-Scopes": "admin", "X-Scope": "admin", "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil",
		"X-Forwarded-Proto": "https", "X-Real-Ip": "1.2.3.4", "Forwarded": "for=1.2.3.4",
		"X-Auth-Method": "mtls", "X-Client-Cert-Subject": "CN=root", "X-Api-Key": "k", "X-Service-Id": "9",
		"Proxy-Authorization": "Basic x", "X-Other": "kept",
	})
	want := map[string]string{
		"X-User-Id":   hashUserID("alice"), // hashed once, not twice
		"X-Tenant-Id": tenant,              // 32 hex: the client's choice, overriding the key's
		"X-Plan":      "gold",
		"X-Other":     "kept",
	}
	for k, v := range want {
		if got := s.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %v, want %s", k, got, v)
		}
	}
	for _, k := range []string{"X-Tenant-Role", "X-User-Email", "X-Scopes", "X-Scope", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "Forwarded", "X-Auth-Method",
		"X-Client-Cert-Subject", "X-Api-Key", "X-Service-Id", "Proxy-Authorization", "Authorization"} {
		if v, ok := s.Header[k]; ok {
			t.Errorf("client %s reached the upstream: %v", k, v)
		}
	}
	if u := strings.TrimPrefix(e.up.srv.URL, "http://"); s.Host != u {
		t.Errorf("Host = %s, want upstream %s", s.Host, u)
	}
	// A non-hex tenant is hashed.
	code, m = e.exchange(key, map[string]any{"additional_headers": map[string]string{"x-tenant-id": "acme"}})
	_, s, _ = e.get("/h", "Bearer "+m["access_token"].(string), nil)
	if s.Header["X-Tenant-Id"][0] != hashUserID("acme") {
		t.Errorf("tenant not hashed: %v", s.Header["X-Tenant-Id"])
	}
}

// TestProxyRefusals: every refusal answers with its code and nothing
// reaches the upstream.
func TestProxyRefusals(t *testing.T) {
	e := newEnv(t, nil)
	key := e.apiKey(nil)
	_, m := e.exchange(key, map[string]any{})
	tok := m["access_token"].(string)

	other, _ := NewTokenKey()
	ki, _ := e.srv.keys.Get(strings.SplitN(key, ".", 2)[0])
	forged, _, _ := issueToken(other, ki, nil, e.clock.Now(), time.Minute)
	unknownSvc := &KeyInfo{KeyID: ki.KeyID, ServiceID: registry.ID{Main: 99}}
	tokUnknown, _, _ := issueToken(e.srv.key, unknownSvc, nil, e.clock.Now(), time.Minute)
	tampered := []byte(tok)
	tampered[20] ^= 1

	for _, tc := range []struct {
		name  string
		authz string
		want  int
	}{
		{"missing", "", 401},
		{"basic", "Basic dXNlcjpwYXNz", 401},
		{"lowercase bearer", "bearer " + tok, 401},
		{"empty bearer", "Bearer ", 401},
		{"garbage", "Bearer nonsense", 401},
		{"forged token (other key)", "Bearer " + forged.Reveal(), 401},
		{"tampered token", "Bearer " + string(tampered), 401},
		{"token with another key's id", "Bearer " + tokUnknown.Reveal(), 401},
		{"raw api key", "Bearer " + key, 401},
		{"legacy id|token", "Bearer 7|abcdef", 401},
		{"v4.public", "Bearer v4.public.abc", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, h := e.get("/x", tc.authz, nil); code != tc.want || h.Get("X-Request-Id") == "" {
				t.Fatalf("code %d, want %d", code, tc.want)
			}
		})
	}
	if n := e.up.count.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the upstream", n)
	}

	// Expired token.
	e.clock.Add(15*time.Minute + time.Second)
	if code, _, _ := e.get("/x", "Bearer "+tok, nil); code != 401 {
		t.Fatalf("expired token: %d", code)
	}
	e.clock.Add(-15*time.Minute - time.Second)

	// Revoked key: its live token dies at once.
	if code, _, _ := e.get("/x", "Bearer "+tok, nil); code != 200 {
		t.Fatalf("valid token: %d", code)
	}
	if err := e.srv.RevokeAPIKey(context.Background(), ki.KeyID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get("/x", "Bearer "+tok, nil); code != 401 {
		t.Fatalf("token of revoked key: %d", code)
	}

	// Unregistered service: 404.
	tok2 := e.token()
	if err := e.reg.Delete(context.Background(), registry.ID{Main: 7}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get("/x", "Bearer "+tok2, nil); code != 404 {
		t.Fatalf("unregistered service: %d", code)
	}
	if n := e.up.count.Load(); n != 1 {
		t.Fatalf("upstream count %d, want 1 (the one valid request)", n)
	}
}

func TestRawAPIKeyCompatibility(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowRawAPIKeys = true })
	key := e.apiKey(nil)
	if code, _, _ := e.get("/x", "Bearer "+key, nil); code != 200 {
		t.Fatalf("raw key with compatibility on: %d", code)
	}
	if code, _, _ := e.get("/x", "Bearer "+key+"x", nil); code != 401 {
		t.Fatalf("wrong raw key: %d", code)
	}
}

func TestChallengeRefusals(t *testing.T) {
	e := newEnv(t, nil)
	pub := hex.EncodeToString(e.ecdsaPub())
	ok := map[string]string{"pub_key": pub, "key_type": "Ecdsa"}
	stranger, _ := secp256k1.GeneratePrivateKey()
	for _, tc := range []struct {
		name string
		sid  string
		body any
		ct   string
		want int
	}{
		{"missing service id", "", ok, "", 428},
		{"bad service id", "seven", ok, "", 400},
		{"unknown service", "8", ok, "", 404},
		{"sub id not registered", "7:1", ok, "", 404},
		{"wrong content type", "7", ok, "text/plain", 415},
		{"syntax", "7", `{"pub_key":`, "", 400},
		{"bad hex", "7", map[string]string{"pub_key": "zz", "key_type": "Ecdsa"}, "", 422},
		{"0x prefix", "7", map[string]string{"pub_key": "0x" + pub, "key_type": "Ecdsa"}, "", 422},
		{"unknown key type", "7", map[string]string{"pub_key": pub, "key_type": "ecdsa"}, "", 422},
		{"missing field", "7", map[string]string{"pub_key": pub}, "", 422},
		{"not an owner", "7", map[string]string{"pub_key": hex.EncodeToString(stranger.PubKey().SerializeCompressed()), "key_type": "Ecdsa"}, "", 401},
		{"owner bytes, wrong type", "7", map[string]string{"pub_key": pub, "key_type": "Sr25519"}, "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ct != "" {
				hdr["Content-Type"] = tc.ct
			}
			if code, body, _ := e.post("/v1/auth/challenge", tc.sid, tc.body, hdr); code != tc.want {
				t.Fatalf("code %d (%s), want %d", code, body, tc.want)
			}
		})
	}
	// Uppercase hex is fine.
	if code, _, _ := e.post("/v1/auth/challenge", "7", map[string]string{"pub_key": strings.ToUpper(pub), "key_type": "Ecdsa"}, nil); code != 200 {
		t.Fatalf("uppercase hex: %d", code)
	}
	// GET is refused.
	resp, _ := http.Get(e.url + "/v1/auth/challenge")
	if resp.StatusCode != 405 {
		t.Fatalf("GET challenge: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func TestBn254Refusal(t *testing.T) {
	e := newEnv(t, nil)
	bn := bytes.Repeat([]byte{0xff}, 64) // malformed G2 bytes
	e.reg.AddOwner(context.Background(), registry.ID{Main: 7}, registry.Owner{KeyType: registry.KeyTypeBn254Bls, KeyBytes: bn})
	code, body, _ := e.post("/v1/auth/challenge", "7", map[string]string{"pub_key": hex.EncodeToString(bn), "key_type": "Bn254Bls"}, nil)
	if code != 400 || !strings.Contains(string(body), "not supported") {
		t.Fatalf("bn254 challenge: %d %s", code, body)
	}
	c := challengeResp{Challenge: strings.Repeat("00", 32), ExpiresAt: e.clock.Now().Unix() + 30}
	code, m := e.verify("7", "Bn254Bls", bn, c, strings.Repeat("ff", 64), nil)
	if code != 400 || !strings.Contains(fmt.Sprint(m["data"]), "not supported") {
		t.Fatalf("bn254 verify: %d %v", code, m)
	}
}

func TestVerifyRefusals(t *testing.T) {
	e := newEnv(t, nil)
	pub := e.ecdsaPub()

	// Replay: a used challenge never works again.
	c := e.challenge("7", "Ecdsa", pub)
	sig := e.signEcdsa(c.Challenge)
	if code, _ := e.verify("7", "Ecdsa", pub, c, sig, nil); code != 201 {
		t.Fatal("first verify failed")
	}
	if code, m := e.verify("7", "Ecdsa", pub, c, sig, nil); code != 401 || m["status"] != "Unauthorized" {
		t.Fatalf("replayed challenge: %d %v", code, m)
	}

	// Expired challenge.
	c = e.challenge("7", "Ecdsa", pub)
	e.clock.Add(DefaultChallengeTTL)
	if code, m := e.verify("7", "Ecdsa", pub, c, e.signEcdsa(c.Challenge), nil); code != 401 || m["status"] != "Expired" {
		t.Fatalf("expired challenge: %d %v", code, m)
	}

	// A challenge the server never issued (upstream accepts any).
	var own [32]byte
	rand.Read(own[:])
	forged := challengeResp{Challenge: hex.EncodeToString(own[:]), ExpiresAt: e.clock.Now().Unix() + 30}
	if code, _ := e.verify("7", "Ecdsa", pub, forged, e.signEcdsa(forged.Challenge), nil); code != 401 {
		t.Fatalf("self-made challenge: %d", code)
	}

	// A challenge issued to the sr25519 owner, answered by the ECDSA owner.
	c = e.challenge("7", "Sr25519", e.srPub)
	if code, _ := e.verify("7", "Ecdsa", pub, c, e.signEcdsa(c.Challenge), nil); code != 401 {
		t.Fatalf("challenge of another key: %d", code)
	}

	// Wrong signature; then the challenge is burnt.
	c = e.challenge("7", "Ecdsa", pub)
	bad := e.signEcdsa(strings.Repeat("11", 32))
	if code, m := e.verify("7", "Ecdsa", pub, c, bad, nil); code != 401 || m["status"] != "InvalidSignature" {
		t.Fatalf("wrong signature: %d %v", code, m)
	}
	if code, _ := e.verify("7", "Ecdsa", pub, c, e.signEcdsa(c.Challenge), nil); code != 401 {
		t.Fatalf("challenge reusable after a failed verify: %d", code)
	}

	// High-S twin of a valid signature.
	c = e.challenge("7", "Ecdsa", pub)
	raw, _ := hex.DecodeString(e.signEcdsa(c.Challenge))
	var s secp256k1.ModNScalar
	s.SetByteSlice(raw[32:])
	s.Negate()
	sb := s.Bytes()
	copy(raw[32:], sb[:])
	if code, m := e.verify("7", "Ecdsa", pub, c, hex.EncodeToString(raw), nil); code != 401 || m["status"] != "InvalidSignature" {
		t.Fatalf("high-S: %d %v", code, m)
	}

	// Not an owner; unknown service; bad headers; malformed fields.
	stranger, _ := secp256k1.GeneratePrivateKey()
	c = e.challenge("7", "Ecdsa", pub)
	if code, m := e.verify("7", "Ecdsa", stranger.PubKey().SerializeCompressed(), c, e.signEcdsa(c.Challenge), nil); code != 401 || m["status"] != "Unauthorized" {
		t.Fatalf("non-owner: %d %v", code, m)
	}
	if code, m := e.verify("8", "Ecdsa", pub, c, e.signEcdsa(c.Challenge), nil); code != 404 || m["status"] != "UnexpectedError" {
		t.Fatalf("unknown service: %d %v", code, m)
	}
	if code, m := e.verify("7", "Ecdsa", pub, c, e.signEcdsa(c.Challenge), map[string]string{"Host": "x"}); code != 400 || !strings.Contains(fmt.Sprint(m), "Invalid headers") {
		t.Fatalf("bad headers: %d %v", code, m)
	}
	for name, body := range map[string]map[string]any{
		"no expires_at":   {"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa", "challenge": c.Challenge, "signature": strings.Repeat("00", 64)},
		"short signature": {"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa", "challenge": c.Challenge, "signature": strings.Repeat("00", 63), "expires_at": 1},
		"65-byte sig":     {"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa", "challenge": c.Challenge, "signature": strings.Repeat("00", 65), "expires_at": 1},
		"short challenge": {"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa", "challenge": "00", "signature": strings.Repeat("00", 64), "expires_at": 1},
		"negative expiry": {"pub_key": hex.EncodeToString(pub), "key_type": "Ecdsa", "challenge": c.Challenge, "signature": strings.Repeat("00", 64), "expires_at": -1},
	} {
		if code, out, _ := e.post("/v1/auth/verify", "7", body, nil); code != 422 {
			t.Errorf("%s: %d %s", name, code, out)
		}
	}
	if n := e.up.count.Load(); n != 0 {
		t.Fatalf("auth endpoints reached the upstream %d times", n)
	}
}

func TestExchangeRefusals(t *testing.T) {
	e := newEnv(t, nil)
	key := e.apiKey(nil)
	for _, tc := range []struct {
		name, authz string
		body        any
		want        int
		err         string
	}{
		{"missing", "", map[string]any{}, 401, "missing_authorization_header"},
		{"basic", "Basic " + key, map[string]any{}, 400, "invalid_authorization_header"},
		{"no dot", "Bearer abcdef", map[string]any{}, 400, "invalid_api_key_format"},
		{"unknown id", "Bearer ak_AAAAAAAAAAA.secret", map[string]any{}, 401, "invalid_api_key"},
		{"wrong secret", "Bearer " + key[:len(key)-1] + "x", map[string]any{}, 401, "invalid_api_key"},
		{"ttl zero", "Bearer " + key, map[string]any{"ttl_seconds": 0}, 400, "invalid_request"},
		{"bad header", "Bearer " + key, map[string]any{"additional_headers": map[string]string{"transfer-encoding": "x"}}, 400, "invalid_headers"},
		{"too many headers", "Bearer " + key, map[string]any{"additional_headers": map[string]string{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1", "f": "1", "g": "1", "h": "1", "i": "1"}}, 400, "invalid_headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.authz != "" {
				hdr["Authorization"] = tc.authz
			}
			code, out, _ := e.post("/v1/auth/exchange", "", tc.body, hdr)
			var m map[string]string
			json.Unmarshal(out, &m)
			if code != tc.want || m["error"] != tc.err {
				t.Fatalf("%d %s, want %d %s", code, out, tc.want, tc.err)
			}
		})
	}
	// TTL is capped at an hour.
	code, m := e.exchange(key, map[string]any{"ttl_seconds": 1 << 40})
	if code != 200 || m["expires_in"].(float64) != 3600 {
		t.Fatalf("uncapped ttl: %d %v", code, m)
	}
	// Disabled, then expired keys.
	id := strings.SplitN(key, ".", 2)[0]
	e.srv.RevokeAPIKey(context.Background(), id)
	if code, m := e.exchange(key, map[string]any{}); code != 401 || m["error"] != "disabled_api_key" {
		t.Fatalf("revoked key: %d %v", code, m)
	}
	key2 := e.apiKey(nil)
	e.clock.Add(DefaultAPIKeyTTL)
	if code, m := e.exchange(key2, map[string]any{}); code != 401 || m["error"] != "expired_api_key" {
		t.Fatalf("expired key: %d %v", code, m)
	}
}

func TestOperatorMintRevoke(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, _, err := e.srv.MintAPIKey(ctx, registry.ID{Main: 8}, MintOptions{}); err == nil {
		t.Fatal("minted a key for an unregistered service")
	}
	key, ki, err := e.srv.MintAPIKey(ctx, registry.ID{Main: 7}, MintOptions{Label: "ci", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %s %+v %#v", key, key, key, key); strings.Contains(s, key.Reveal()) || strings.Contains(s, ".") {
		t.Fatalf("api key printed: %s", s)
	}
	if ki.Owner != "operator" || !strings.HasPrefix(ki.KeyID, "ak_") || strings.Contains(fmt.Sprint(ki), key.Reveal()) {
		t.Fatalf("key info %+v", ki)
	}
	if l := e.srv.Keys().List(&registry.ID{Main: 7}); len(l) != 1 || l[0].Label != "ci" {
		t.Fatalf("List = %+v", l)
	}
	code, m := e.exchange(key.Reveal(), map[string]any{})
	if code != 200 {
		t.Fatalf("exchange operator key: %d", code)
	}
	tok := m["access_token"].(string)
	if code, _, _ := e.get("/", "Bearer "+tok, nil); code != 200 {
		t.Fatalf("proxied: %d", code)
	}
	if err := e.srv.RevokeAPIKey(ctx, ki.KeyID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get("/", "Bearer "+tok, nil); code != 401 {
		t.Fatalf("after revoke: %d", code)
	}
	// Keys survive a restart of the key store (hash only in the store).
	kvs, _ := e.srv.keys.store.List(ctx, keyStorePrefix)
	for _, kv := range kvs {
		if bytes.Contains(kv.Value, []byte(strings.SplitN(key.Reveal(), ".", 2)[1])) {
			t.Fatal("key secret stored in clear")
		}
	}
	tk, _ := NewTokenKey()
	if s := fmt.Sprintf("%v %+v %s", tk, tk, tk); strings.Count(s, "[REDACTED]") != 3 {
		t.Fatalf("token key printed: %s", s)
	}
}

func TestUnixAndTunnelUpstreams(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	// A unix-socket upstream.
	dir, _ := os.MkdirTemp("", "bpmap")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "up.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	unixUp := &upstream{}
	us := &http.Server{Handler: http.HandlerFunc(unixUp.handler)}
	go us.Serve(ln)
	defer us.Close()
	rec, _ := e.reg.Get(registry.ID{Main: 7})
	rec.UpstreamURL = "unix://" + sock
	rec.Transport = registry.TransportUnix
	if err := e.reg.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	tok := e.token()
	if code, s, _ := e.get("/u?q=1", "Bearer "+tok, nil); code != 200 || unixUp.count.Load() != 1 || s.Path != "/u" {
		t.Fatalf("unix upstream: %d %+v", code, s)
	}
	if e.up.count.Load() != 0 {
		t.Fatal("stale route: old upstream reached after re-registration")
	}

	// A tunnel upstream: the gateway's dialer is asked for the instance
	// address as seen from the gateway; here it connects to a loopback
	// server standing in for the far end of the tunnel.
	var dialed []string
	var mu sync.Mutex
	tunnelDialer := dialerFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", e.up.srv.Listener.Addr().String())
	})
	e2 := newEnv(t, func(c *Config) { c.Dialers = DialerMap{"aws": tunnelDialer} })
	rec, _ = e2.reg.Get(registry.ID{Main: 7})
	rec.UpstreamURL = "http://echo.instance.bpm:8080"
	rec.Transport = registry.TransportTunnel
	rec.Gateway = "aws"
	e2.reg.Put(ctx, rec)
	tok = e2.token()
	if code, s, _ := e2.get("/t", "Bearer "+tok, nil); code != 200 || s.Host != "echo.instance.bpm:8080" {
		t.Fatalf("tunnel upstream: %d %+v", code, s)
	}
	mu.Lock()
	if len(dialed) != 1 || dialed[0] != "echo.instance.bpm:8080" {
		t.Fatalf("dialed %v", dialed)
	}
	mu.Unlock()
	// Unknown gateway: 502, nothing dialled.
	rec.Gateway = "gone"
	e2.reg.Put(ctx, rec)
	if code, _, _ := e2.get("/t", "Bearer "+tok, nil); code != 502 {
		t.Fatalf("unknown gateway: %d", code)
	}
	// Terminate removes the route: 404.
	e2.reg.Delete(ctx, registry.ID{Main: 7})
	if code, _, _ := e2.get("/t", "Bearer "+tok, nil); code != 404 {
		t.Fatalf("after terminate: %d", code)
	}
}

func TestTCPLocalRefusesNonLoopback(t *testing.T) {
	e := newEnv(t, nil)
	rec, _ := e.reg.Get(registry.ID{Main: 7})
	// TEST-NET-1: the dial is refused before any packet leaves.
	rec.UpstreamURL = "http://192.0.2.1:80"
	e.reg.Put(context.Background(), rec)
	if code, _, _ := e.get("/", "Bearer "+e.token(), nil); code != 502 {
		t.Fatalf("non-loopback tcp-local upstream: %d", code)
	}
}

type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

func TestUnauthenticatedExtrasNotServed(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"/v1/auth/certificates", "/v1/admin/services/7/tls-profile"} {
		code, _, _ := e.post(p, "7", map[string]any{}, nil)
		if code != 404 {
			t.Errorf("%s: %d", p, code)
		}
	}
	code, out, _ := e.post("/v1/oauth/token", "7", "grant_type=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if code != 400 || !strings.Contains(string(out), "OAuth not enabled") {
		t.Errorf("oauth: %d %s", code, out)
	}
	code, _, _ = e.post("/v1/oauth/token", "", "grant_type=x", nil)
	if code != 428 {
		t.Errorf("oauth without service id: %d", code)
	}
	if e.up.count.Load() != 0 {
		t.Fatal("reached upstream")
	}
}
