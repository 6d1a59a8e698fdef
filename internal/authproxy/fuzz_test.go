package authproxy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// fuzzEnv is an in-process proxy (no listener) in front of a counting
// upstream; fuzz inputs can never hold a valid token, so the count must
// stay zero.
func fuzzEnv(f *testing.F) (*Server, *upstream) {
	ctx := context.Background()
	store := registry.NewMemStore()
	reg, _ := registry.Open(ctx, store, nil)
	keys, _ := OpenKeyStore(ctx, store)
	up := &upstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(up.handler))
	f.Cleanup(up.srv.Close)
	reg.Create(ctx, &registry.Record{ServiceID: 7, APIKeyPrefix: "ak_", UpstreamURL: up.srv.URL,
		Owners: []registry.Owner{{KeyType: registry.KeyTypeEcdsa, KeyBytes: unhex(f, vecEcdsaPub)}}})
	s, err := New(Config{Registry: reg, Keys: keys})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	return s, up
}

// FuzzProxyRequest: arbitrary method, path, headers and body through the
// whole handler — no panic, no upstream contact, and a status the wire
// sheet allows.
func FuzzProxyRequest(f *testing.F) {
	s, up := fuzzEnv(f)
	h := s.Handler()
	f.Add("GET", "/x", "Bearer v4.local.AAAA", "7", "application/json", []byte(`{}`))
	f.Add("POST", "/v1/auth/challenge", "", "7", "application/json", []byte(`{"pub_key":"`+vecEcdsaPub+`","key_type":"Ecdsa"}`))
	f.Add("POST", "/v1/auth/verify", "", "7:0", "application/json", []byte(`{"pub_key":"00","key_type":"Ecdsa","challenge":"`+strings.Repeat("00", 32)+`","signature":"`+strings.Repeat("00", 64)+`","expires_at":1}`))
	f.Add("POST", "/v1/auth/exchange", "Bearer ak_x.y", "", "application/json", []byte(`{"ttl_seconds":5,"additional_headers":{"x-a":"b"}}`))
	f.Add("POST", "/v1/oauth/token", "", "1", "application/x-www-form-urlencoded", []byte("grant_type=x"))
	f.Add("GET", "/", "Bearer 1|abc", "x", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, path, authz, sid, ct string, body []byte) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") {
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			return
		}
		req := httptest.NewRequest(method, "http://proxy"+path, bytes.NewReader(body))
		setIfValid(req.Header, "Authorization", authz)
		setIfValid(req.Header, "X-Service-Id", sid)
		setIfValid(req.Header, "Content-Type", ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 201: // a challenge for the vector's owner is legitimate
			if !strings.HasPrefix(path, "/v1/auth/") {
				t.Fatalf("proxied with a fuzzed credential: %d", rec.Code)
			}
		case 400, 401, 404, 405, 413, 415, 422, 428, 503:
		default:
			t.Fatalf("status %d for %s %s", rec.Code, method, path)
		}
		if rec.Header().Get("X-Request-Id") == "" {
			t.Fatal("no x-request-id")
		}
		if n := up.count.Load(); n != 0 {
			t.Fatalf("fuzzed request reached the upstream (%d)", n)
		}
	})
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

func setIfValid(h http.Header, k, v string) {
	if v == "" || strings.ContainsAny(v, "\r\n\x00") {
		return
	}
	h.Set(k, v)
}

// FuzzParseToken: random strings (and mutations of a real token) never
// parse under the key, and never panic.
func FuzzParseToken(f *testing.F) {
	key, _ := NewTokenKey()
	now := time.Now()
	tok, _, _ := issueToken(key, &KeyInfo{KeyID: "k", ServiceID: registry.ID{Main: 1}}, map[string]string{"a": "b"}, now, time.Minute)
	f.Add(tok.Reveal())
	f.Add("v4.local.")
	f.Add("v4.local.AAAA.BBBB")
	f.Add("v4.local." + strings.Repeat("A", 200))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseToken(key, s, now)
		if err == nil && s != tok.Reveal() {
			t.Fatalf("accepted a token that was not issued: %q -> %+v", s, c)
		}
	})
}

// FuzzNormalizeHeaders: whatever it accepts obeys the limits.
func FuzzNormalizeHeaders(f *testing.F) {
	f.Add("X-User-Id", "alice", "x-tenant-id", strings.Repeat("a", 32))
	f.Add("Host", "x", "te", "trailers")
	f.Add("a-bin", "AAEC", "b", "\t")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		out, err := normalizeHeaders(map[string]string{k1: v1, k2: v2})
		if err != nil {
			return
		}
		for k, v := range out {
			if forbiddenExtra[k] || checkHeaderName(k) != nil || len(v) > maxHeaderValueLen || strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("accepted %q: %q", k, v)
			}
			if piiHeaders[k] && len(v) != 32 {
				t.Fatalf("%s not hashed: %q", k, v)
			}
		}
	})
}
