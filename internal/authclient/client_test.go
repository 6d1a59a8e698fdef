package authclient_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/authproxy"
	"github.com/bpm-project/bpm/internal/registry"
)

// env is a real auth proxy on a loopback listener, routing service 7 to a
// real upstream that counts the requests reaching it.
type env struct {
	url      string
	srv      *authproxy.Server
	upstream atomic.Int64
}

func startProxy(t *testing.T, owners ...authclient.Signer) *env {
	t.Helper()
	e := &env{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		io.WriteString(w, "hello from upstream")
	}))
	t.Cleanup(up.Close)

	ctx, cancel := context.WithCancel(context.Background())
	store := registry.NewMemStore()
	reg, err := registry.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := authproxy.OpenKeyStore(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	rec := &registry.Record{ServiceID: 7, APIKeyPrefix: "echo_", UpstreamURL: up.URL}
	for _, o := range owners {
		rec.Owners = append(rec.Owners, registry.Owner{KeyType: o.KeyType(), KeyBytes: o.PublicKey()})
	}
	if err := reg.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	e.srv, err = authproxy.New(authproxy.Config{Registry: reg, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; e.srv.Close() })
	e.url = "http://" + ln.Addr().String()
	return e
}

func (e *env) get(t *testing.T, authz string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+"/hello", nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func mustKey(t *testing.T, kt registry.KeyType) authclient.PrivateKey {
	t.Helper()
	k, err := authclient.GenerateKey(kt)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLoginExchangeAndProxy runs the whole flow with real keys of both
// types against a real proxy: a request with the token reaches the
// upstream, one without does not.
func TestLoginExchangeAndProxy(t *testing.T) {
	ec, sr := mustKey(t, registry.KeyTypeEcdsa), mustKey(t, registry.KeyTypeSr25519)
	e := startProxy(t, ec, sr)
	ctx := t.Context()
	for _, k := range []authclient.PrivateKey{ec, sr} {
		t.Run(authclient.KeyTypeName(k.KeyType()), func(t *testing.T) {
			before := e.upstream.Load()
			cred, err := authclient.Login(ctx, e.url, 7, k)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(cred.APIKey.Reveal(), "echo_") || !strings.HasPrefix(cred.APIKey.ID(), "echo_") {
				t.Errorf("api key does not carry the service's prefix (id %s)", cred.APIKey.ID())
			}
			if d := time.Until(cred.ExpiresAt); d < 89*24*time.Hour {
				t.Errorf("api key expires in %v, want ~90 days", d)
			}
			tok, err := authclient.Exchange(ctx, e.url, cred.APIKey, 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.ExpiresIn != 10*time.Minute || !strings.HasPrefix(tok.Token.Reveal(), "v4.local.") {
				t.Errorf("token: type %q, expires in %v", tok.TokenType, tok.ExpiresIn)
			}
			if code := e.get(t, ""); code != http.StatusUnauthorized {
				t.Errorf("without token: %d, want 401", code)
			}
			if code := e.get(t, "Bearer "+tok.Token.Reveal()); code != http.StatusOK {
				t.Errorf("with token: %d, want 200", code)
			}
			if got := e.upstream.Load() - before; got != 1 {
				t.Errorf("upstream saw %d requests, want 1", got)
			}
		})
	}
	// The proxy's default TTL when none is asked for.
	cred, err := authclient.Login(ctx, e.url, 7, ec)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := authclient.Exchange(ctx, e.url, cred.APIKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != 15*time.Minute {
		t.Errorf("default ttl %v, want 15m", tok.ExpiresIn)
	}
}

func wantProxyError(t *testing.T, err error, op string, status int, code string) *authclient.Error {
	t.Helper()
	var pe *authclient.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *authclient.Error", err)
	}
	if pe.Op != op || pe.StatusCode != status || pe.Code != code {
		t.Fatalf("got %s %d %q, want %s %d %q (%v)", pe.Op, pe.StatusCode, pe.Code, op, status, code, err)
	}
	if pe.RequestID == "" {
		t.Errorf("no request id in %v", err)
	}
	return pe
}

// impostor claims an owner's public key but signs with another key.
type impostor struct {
	authclient.Signer
	claimed []byte
}

func (i impostor) PublicKey() []byte { return i.claimed }

func TestRefusals(t *testing.T) {
	owner := mustKey(t, registry.KeyTypeEcdsa)
	srOwner := mustKey(t, registry.KeyTypeSr25519)
	e := startProxy(t, owner, srOwner)
	ctx := t.Context()

	// A key that is not an owner is refused at the challenge.
	stranger := mustKey(t, registry.KeyTypeEcdsa)
	_, err := authclient.Login(ctx, e.url, 7, stranger)
	pe := wantProxyError(t, err, "challenge", http.StatusUnauthorized, "")
	if !strings.Contains(err.Error(), "not an owner of service 7") {
		t.Errorf("error does not explain: %v", pe)
	}

	// The owner's public key with someone else's signature: the right
	// challenge, the wrong key.
	for _, imp := range []impostor{
		{Signer: stranger, claimed: owner.PublicKey()},
		{Signer: mustKey(t, registry.KeyTypeSr25519), claimed: srOwner.PublicKey()},
	} {
		_, err = authclient.Login(ctx, e.url, 7, imp)
		wantProxyError(t, err, "verify", http.StatusUnauthorized, "InvalidSignature")
	}

	// An unknown service.
	_, err = authclient.Login(ctx, e.url, 8, owner)
	wantProxyError(t, err, "challenge", http.StatusNotFound, "")

	// A made-up API key.
	fake, err := authclient.ParseAPIKey("echo_AAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
	if err != nil {
		t.Fatal(err)
	}
	_, err = authclient.Exchange(ctx, e.url, fake, 0)
	wantProxyError(t, err, "exchange", http.StatusUnauthorized, "invalid_api_key")

	// A revoked key: its exchange is refused with the proxy's code.
	cred, err := authclient.Login(ctx, e.url, 7, owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.RevokeAPIKey(ctx, cred.APIKey.ID()); err != nil {
		t.Fatal(err)
	}
	_, err = authclient.Exchange(ctx, e.url, cred.APIKey, 0)
	wantProxyError(t, err, "exchange", http.StatusUnauthorized, "disabled_api_key")

	if n := e.upstream.Load(); n != 0 {
		t.Errorf("refused requests reached the upstream %d times", n)
	}
}

// TestStrictReplies: a reply that is not exactly what the wire format
// says is refused, never half-trusted.
func TestStrictReplies(t *testing.T) {
	k := mustKey(t, registry.KeyTypeEcdsa)
	cases := map[string]struct {
		ctype, body string
	}{
		"unknown field":  {"application/json", `{"challenge":"` + strings.Repeat("00", 32) + `","expires_at":1,"extra":1}`},
		"missing field":  {"application/json", `{"challenge":"` + strings.Repeat("00", 32) + `"}`},
		"trailing data":  {"application/json", `{"challenge":"` + strings.Repeat("00", 32) + `","expires_at":1} {}`},
		"short":          {"application/json", `{"challenge":"00","expires_at":1}`},
		"not json ctype": {"text/plain", `{"challenge":"` + strings.Repeat("00", 32) + `","expires_at":1}`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.ctype)
				w.Header().Set("X-Request-Id", "r1")
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			_, err := authclient.Challenge(t.Context(), srv.URL, 7, k.PublicKey(), k.KeyType())
			wantProxyError(t, err, "challenge", 200, "malformed_reply")
		})
	}
}

func TestNoRedirects(t *testing.T) {
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	key, _ := authclient.ParseAPIKey("ak_AAAAAAAAAAA.secret")
	_, err := authclient.Exchange(t.Context(), srv.URL, key, 0)
	var pe *authclient.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("got %v, want the 307 reported", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the API key was replayed to the redirect target")
	}
}

func TestEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8276":        "http://127.0.0.1:8276/v1/auth/exchange",
		"http://127.0.0.1:8276/":       "http://127.0.0.1:8276/v1/auth/exchange",
		"https://auth.example/prefix/": "https://auth.example/prefix/v1/auth/exchange",
	} {
		if got, err := authclient.Endpoint(in, "/v1/auth/exchange"); err != nil || got != want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:8276", "ftp://x", "http://", "http://u:p@h", "http://h/?q=1", "http://h/#f"} {
		if _, err := authclient.Endpoint(bad, "/v1/auth/exchange"); err == nil {
			t.Errorf("Endpoint(%q) accepted", bad)
		}
	}
}
