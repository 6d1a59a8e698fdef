package docker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// logMarker is what the test image prints once it listens.
const logMarker = "listening on :8080"

func noEnv(string) string { return "" }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newTestProvider builds a provider for a remote named after the test, so
// parallel runs and other engineers' tests do not share networks.
func newTestProvider(t *testing.T, remote string, c *Config) *Provider {
	t.Helper()
	p, err := New(remote, c, Options{Getenv: noEnv, Progress: &bytes.Buffer{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	cleanupRemote(t, p)
	t.Cleanup(func() { cleanupRemote(t, p) })
	return p
}

// cleanupRemote removes whatever an interrupted run left for the remote.
func cleanupRemote(t testing.TB, p *Provider) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owned, err := p.ListOwned(ctx)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	for _, o := range owned {
		if err := p.Terminate(ctx, provider.Ref{InstanceID: o.InstanceID, Remote: p.remote}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if err := p.cleanupIfLast(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func TestIntegrationConformancePlain(t *testing.T) {
	env := testenv.Require(t, "docker")
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	p := newTestProvider(t, "conf-plain", c)
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Remote:    "conf-plain",
		Package:   providertest.ContainerPackage(env.Docker.Image),
		LogMarker: logMarker,
		Timeout:   time.Minute,
	})
}

func TestIntegrationContainerConfig(t *testing.T) {
	env := testenv.Require(t, "docker")
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	c.Resources.CPULimit = "250m" // tighter than the manifest's 500m
	p := newTestProvider(t, "conf-config", c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := providertest.NewInstanceID()
	pkg := providertest.ContainerPackage(env.Docker.Image)(t)
	h, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: id, Remote: "conf-config", BlueprintID: 4, ServiceID: 9, Package: pkg, Env: map[string]string{"SECRET": "s3cret"}})
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if bytes.Contains(h, []byte("s3cret")) {
		t.Fatal("handle holds an env value")
	}
	var raw struct {
		Config struct {
			Env    []string
			Labels map[string]string
		}
		HostConfig struct {
			NanoCpus, Memory int64
			RestartPolicy    struct{ Name string }
			PortBindings     map[string]any
			PublishAllPorts  bool
			NetworkMode      string
		}
		Name string
	}
	if err := p.cli.call(ctx, "GET", "/containers/"+id+"/json", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	hc := raw.HostConfig
	if hc.NanoCpus != 250_000_000 || hc.Memory != 64<<20 || hc.RestartPolicy.Name != "unless-stopped" ||
		len(hc.PortBindings) != 0 || hc.PublishAllPorts || hc.NetworkMode != "bpm-conf-config" || raw.Name != "/"+id {
		t.Errorf("host config %+v, name %s", hc, raw.Name)
	}
	l := raw.Config.Labels
	if l[labelInstance] != id || l[labelRemote] != "conf-config" || l[labelBlueprint] != "4" || l[labelService] != "9" {
		t.Errorf("labels %v", l)
	}
	if !strings.Contains(strings.Join(raw.Config.Env, "\n"), "SECRET=s3cret") {
		t.Errorf("env %v lacks SECRET", raw.Config.Env)
	}
	if err := p.Terminate(ctx, provider.Ref{InstanceID: id, Remote: "conf-config"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.cli.networkInspect(ctx, p.networkName()); err == nil {
		t.Error("network left after the last instance")
	}
}

func TestIntegrationMaxInstances(t *testing.T) {
	env := testenv.Require(t, "docker")
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	c.MaxInstances = 1
	p := newTestProvider(t, "conf-quota", c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pkg := providertest.ContainerPackage(env.Docker.Image)(t)
	first := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: "conf-quota", Package: pkg}
	if _, err := p.Deploy(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The same instance again is a retry, not a second instance.
	if _, err := p.Deploy(ctx, first); err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	second := first
	second.InstanceID = providertest.NewInstanceID()
	if _, err := p.Deploy(ctx, second); !errors.Is(err, provider.ErrQuota) {
		t.Fatalf("second instance: err = %v, want ErrQuota", err)
	}
	r, err := p.Resources(ctx)
	if err != nil || r.Instances != 0 {
		t.Fatalf("Resources = %+v, %v; want 0 instances left", r, err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
