package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestHealthz(t *testing.T) {
	rec := httptest.NewRecorder()
	newHandler(envMap(nil)).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", rec.Code, rec.Body.String())
	}
}

func TestEchoShowsRequestAndSDKEnvButNoSecrets(t *testing.T) {
	env := map[string]string{
		"BLUEPRINT_ID": "1",
		"SERVICE_ID":   "7",
		"DATA_DIR":     "/data/blueprint-1-echo",
		"KEYSTORE_URI": "/secret/keystore",
		"API_TOKEN":    "hunter2",
	}
	req := httptest.NewRequest("POST", "/some/path?q=1", nil)
	req.Header.Set("X-Request-Id", "req-42")
	rec := httptest.NewRecorder()
	newHandler(envMap(env)).ServeHTTP(rec, req)

	var got echoResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
	}
	want := echoResponse{
		Method: "POST", Path: "/some/path", RequestID: "req-42",
		Env: map[string]string{"BLUEPRINT_ID": "1", "SERVICE_ID": "7", "DATA_DIR": "/data/blueprint-1-echo"},
	}
	if got.Method != want.Method || got.Path != want.Path || got.RequestID != want.RequestID || len(got.Env) != len(want.Env) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for k, v := range want.Env {
		if got.Env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, got.Env[k], v)
		}
	}
	for _, secret := range []string{"hunter2", "/secret/keystore"} {
		if strings.Contains(rec.Body.String(), secret) {
			t.Errorf("response leaks %q:\n%s", secret, rec.Body)
		}
	}
}

func TestSensitive(t *testing.T) {
	for name, want := range map[string]bool{
		"KEYSTORE_URI": true, "api_token": true, "DB_PASSWORD": true, "MY_SECRET": true,
		"SERVICE_ID": false, "DATA_DIR": false,
	} {
		if got := sensitive(name); got != want {
			t.Errorf("sensitive(%q) = %v, want %v", name, got, want)
		}
	}
	for _, name := range shownEnv() {
		if sensitive(name) {
			t.Errorf("shownEnv lists sensitive %s", name)
		}
	}
}

func TestListenAddr(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{nil, "127.0.0.1:8080"},
		{map[string]string{"PORT": "9000"}, "127.0.0.1:9000"},
		{map[string]string{"PORT": "9000", "ECHO_LISTEN": "0.0.0.0"}, "0.0.0.0:9000"},
		{map[string]string{"ECHO_LISTEN": "::1"}, "[::1]:8080"},
	}
	for _, c := range cases {
		if got := listenAddr(envMap(c.env)); got != c.want {
			t.Errorf("listenAddr(%v) = %q, want %q", c.env, got, c.want)
		}
	}
}

// TestRunServesAndStopsOnCancel runs the real server on a loopback port and
// checks that cancelling (what SIGTERM does in main) returns cleanly.
func TestRunServesAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- run(ctx, envMap(map[string]string{"PORT": "0"}), log, ready) }()

	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("bound %s, want loopback", addr)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("healthz = %d %q", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestListenArg(t *testing.T) {
	for _, c := range []struct {
		args []string
		host string
		ok   bool
	}{
		{nil, "", false},
		{[]string{"run", "--test-mode"}, "", false},
		{[]string{"--listen", "0.0.0.0"}, "0.0.0.0", true},
		{[]string{"run", "--listen=::", "-v"}, "::", true},
		{[]string{"--listen"}, "", false},
		{[]string{"--listen", "a", "--listen=b"}, "b", true},
	} {
		host, ok := listenArg(c.args)
		if host != c.host || ok != c.ok {
			t.Errorf("listenArg(%q) = %q, %v; want %q, %v", c.args, host, ok, c.host, c.ok)
		}
	}
}
