package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

func tlsConfigFor(env *testenv.Env) *Config {
	c := NewConfig()
	c.Endpoint = env.Docker.TLSHost
	c.CA, c.Cert, c.Key = env.Docker.TLSCA, env.Docker.TLSCert, env.Docker.TLSKey
	return c
}

func TestIntegrationConformanceTLS(t *testing.T) {
	env := testenv.Require(t, "docker")
	p := newTestProvider(t, "conf-tls", tlsConfigFor(env))
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Remote:    "conf-tls",
		Package:   providertest.ContainerPackage(env.Docker.Image),
		LogMarker: logMarker,
		Timeout:   time.Minute,
	})
}

// TestIntegrationTLSRefused: each misconfiguration fails with a message
// that names the cause, not a bare TLS alert.
func TestIntegrationTLSRefused(t *testing.T) {
	env := testenv.Require(t, "docker")
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"no client cert", func(c *Config) { c.Cert, c.Key = "", "" }, "requires a client certificate"},
		{"cert from another CA", func(c *Config) { c.Cert, c.Key = env.Docker.UntrustedCert, env.Docker.UntrustedKey }, "not signed by a CA the engine trusts"},
		{"server not signed by ca", func(c *Config) { c.CA = env.Docker.UntrustedCert }, "not signed by the configured ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsConfigFor(env)
			tc.mod(c)
			p, err := New("refused", c, Options{Getenv: noEnv})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = p.Ping(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ping: err = %v, want it to say %q", err, tc.want)
			}
			// The same refusal on a real call, not just on Ping.
			if _, err := p.ListOwned(ctx); err == nil {
				t.Fatal("ListOwned succeeded")
			}
		})
	}
}

func TestPlainTCPRefusedUnlessInsecure(t *testing.T) {
	c := NewConfig()
	c.Endpoint = "tcp://127.0.0.1:2375"
	_, err := New("plain", c, Options{Getenv: noEnv})
	if err == nil || !strings.Contains(err.Error(), "has no TLS") {
		t.Fatalf("New: err = %v, want a refusal", err)
	}
	c.Insecure = true
	if _, err := New("plain", c, Options{Getenv: noEnv}); err != nil {
		t.Fatalf("New with insecure: %v", err)
	}
	// DOCKER_HOST=tcp:// without DOCKER_TLS_VERIFY is plain too.
	getenv := func(k string) string { return map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2375"}[k] }
	if _, err := New("plain", NewConfig(), Options{Getenv: getenv}); err == nil {
		t.Fatal("New with a plain DOCKER_HOST succeeded")
	}
}

func TestResolveEndpointFromEnv(t *testing.T) {
	env := map[string]string{"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"}
	e, _ := resolveEndpoint(NewConfig(), "", func(k string) string { return env[k] })
	if e.URL != "tcp://h:2376" || e.CA != "/certs/ca.pem" || e.Cert != "/certs/cert.pem" || e.Key != "/certs/key.pem" || !e.FromEnv {
		t.Errorf("from env: %+v", e)
	}
	// The remote's own endpoint wins over the environment.
	c := NewConfig()
	c.Endpoint = "unix:///run/d.sock"
	if e, _ := resolveEndpoint(c, c.Endpoint, func(k string) string { return env[k] }); e.URL != "unix:///run/d.sock" || e.CA != "" {
		t.Errorf("config wins: %+v", e)
	}
	if e, _ := resolveEndpoint(NewConfig(), "", func(k string) string {
		if k == "DOCKER_CONFIG" {
			return t.TempDir() // no config.json: no context
		}
		return ""
	}); e.URL != defaultSocket {
		t.Errorf("default: %+v", e)
	}
}

// TestIntegrationDockerEnv: a remote without endpoint reaches the TLS
// engine through DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
func TestIntegrationDockerEnv(t *testing.T) {
	env := testenv.Require(t, "docker")
	dir := t.TempDir()
	for src, dst := range map[string]string{env.Docker.TLSCA: "ca.pem", env.Docker.TLSCert: "cert.pem", env.Docker.TLSKey: "key.pem"} {
		copyFile(t, src, dir+"/"+dst)
	}
	vars := map[string]string{"DOCKER_HOST": env.Docker.TLSHost, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": dir}
	p, err := New("env", NewConfig(), Options{Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := p.Status(ctx, provider.Ref{InstanceID: providertest.NewInstanceID()}); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Status: %v", err)
	}
}

// writeContext writes a docker context the way `docker context create`
// does, under a DOCKER_CONFIG dir, and makes it current; tls names the
// ca/cert/key files to copy into its TLS store (empty: none).
func writeContext(t *testing.T, dir, name, host string, skipVerify bool, tls map[string]string) {
	t.Helper()
	sum := sha256.Sum256([]byte(name))
	id := hex.EncodeToString(sum[:])
	meta := filepath.Join(dir, "contexts", "meta", id)
	must(t, os.MkdirAll(meta, 0o700))
	b, _ := json.Marshal(map[string]any{"Name": name, "Metadata": map[string]any{},
		"Endpoints": map[string]any{"docker": map[string]any{"Host": host, "SkipTLSVerify": skipVerify}}})
	must(t, os.WriteFile(filepath.Join(meta, "meta.json"), b, 0o600))
	if len(tls) > 0 {
		tdir := filepath.Join(dir, "contexts", "tls", id, "docker")
		must(t, os.MkdirAll(tdir, 0o700))
		for dst, src := range tls {
			copyFile(t, src, filepath.Join(tdir, dst))
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"currentContext": "`+name+`"}`), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveEndpointFromContext(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"DOCKER_CONFIG": dir}
	getenv := func(k string) string { return vars[k] }
	writeContext(t, dir, "edge", "tcp://edge.example:2376", false, nil)
	e, err := resolveEndpoint(NewConfig(), "", getenv)
	if err != nil || e.URL != "tcp://edge.example:2376" || e.Context != "edge" || e.CA != "" {
		t.Errorf("current context: %+v, %v", e, err)
	}
	// DOCKER_HOST wins over the context, as with the docker CLI.
	vars["DOCKER_HOST"] = "unix:///run/other.sock"
	if e, _ := resolveEndpoint(NewConfig(), "", getenv); e.URL != "unix:///run/other.sock" || e.Context != "" {
		t.Errorf("DOCKER_HOST over the context: %+v", e)
	}
	delete(vars, "DOCKER_HOST")
	// DOCKER_CONTEXT names another; "default" means none.
	vars["DOCKER_CONTEXT"] = "default"
	if e, _ := resolveEndpoint(NewConfig(), "", getenv); e.URL != defaultSocket {
		t.Errorf("DOCKER_CONTEXT=default: %+v", e)
	}
	vars["DOCKER_CONTEXT"] = "missing"
	if _, err := resolveEndpoint(NewConfig(), "", getenv); err == nil || !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "DOCKER_CONTEXT") {
		t.Errorf("a context that does not exist: %v", err)
	}
	delete(vars, "DOCKER_CONTEXT")
	// A context that skips verification is refused, never obeyed.
	writeContext(t, dir, "lax", "tcp://lax.example:2376", true, nil)
	if _, err := New("lax", NewConfig(), Options{Getenv: getenv}); err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("SkipTLSVerify context: %v, want a refusal", err)
	}
}

// TestIntegrationDockerContext: a remote without endpoint reaches the TLS
// engine through the current docker context and its TLS store.
func TestIntegrationDockerContext(t *testing.T) {
	env := testenv.Require(t, "docker")
	dir := t.TempDir()
	writeContext(t, dir, "tls-engine", env.Docker.TLSHost, false,
		map[string]string{"ca.pem": env.Docker.TLSCA, "cert.pem": env.Docker.TLSCert, "key.pem": env.Docker.TLSKey})
	p, err := New("ctx", NewConfig(), Options{Getenv: func(k string) string {
		if k == "DOCKER_CONFIG" {
			return dir
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping through the docker context: %v", err)
	}
}
