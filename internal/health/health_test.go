package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
)

func TestCheckHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"ok", Spec{Address: addr, HTTPPath: "/ok"}, ""},
		{"redirect is healthy", Spec{Address: addr, HTTPPath: "/redirect"}, ""},
		{"503", Spec{Address: addr, HTTPPath: "/bad"}, "status 503"},
		{"timeout", Spec{Address: addr, HTTPPath: "/slow", Timeout: 100 * time.Millisecond}, "deadline exceeded"},
		{"no address", Spec{HTTPPath: "/ok"}, "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(context.Background(), tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := Check(context.Background(), Spec{Address: addr}); err != nil {
		t.Fatalf("Check on listening port: %v", err)
	}
	ln.Close()
	// The port is closed now; nothing else on this machine binds ephemeral
	// ports we just released so quickly, and a refusal is what we expect.
	if err := Check(context.Background(), Spec{Address: addr}); err == nil {
		t.Fatalf("Check on closed port succeeded")
	}
}

func TestFromManifest(t *testing.T) {
	ports := []blueprint.Port{
		{Name: "metrics", Port: 9000, Protocol: "udp"},
		{Name: "http", Port: 8080},
		{Name: "admin", Port: 8081, Protocol: "tcp"},
	}
	tests := []struct {
		name    string
		m       blueprint.Manifest
		want    Spec
		wantOK  bool
		wantErr string
	}{
		{name: "none", m: blueprint.Manifest{Ports: ports}},
		{
			name:   "http first tcp port",
			m:      blueprint.Manifest{Ports: ports, Health: &blueprint.Health{HTTP: "healthz", Timeout: blueprint.Duration{Duration: time.Second}}},
			want:   Spec{Address: "127.0.0.1:8080", HTTPPath: "/healthz", Timeout: time.Second},
			wantOK: true,
		},
		{
			name:   "tcp named port",
			m:      blueprint.Manifest{Ports: ports, Health: &blueprint.Health{TCP: true, Port: "admin"}},
			want:   Spec{Address: "127.0.0.1:8081"},
			wantOK: true,
		},
		{name: "udp port", m: blueprint.Manifest{Ports: ports, Health: &blueprint.Health{TCP: true, Port: "metrics"}}, wantErr: `port "metrics" is udp, not tcp`},
		{name: "unknown port", m: blueprint.Manifest{Ports: ports, Health: &blueprint.Health{TCP: true, Port: "x"}}, wantErr: `port "x" is not declared`},
		{name: "no ports", m: blueprint.Manifest{Health: &blueprint.Health{TCP: true}}, wantErr: "no tcp port"},
		{name: "empty check", m: blueprint.Manifest{Ports: ports, Health: &blueprint.Health{}}, wantErr: "neither http nor tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := FromManifest(tt.m, "127.0.0.1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
