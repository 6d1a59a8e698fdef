package ssh

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// dockerTestConfig is a docker-runtime remote over hosts, whose engine
// socket is the testenv's (only ssh1 runs an engine).
func dockerTestConfig(env *testenv.Env, hosts ...string) *Config {
	c := testConfig(env, hosts...)
	c.Runtime = Runtime{Type: RuntimeDocker, DockerSocket: "unix://" + env.SSH.DockerSocket}
	return c
}

// newDockerTestProvider builds a docker-runtime provider for a remote
// named for this run, so its containers and network are apart from any
// other test's, and removes them afterwards.
func newDockerTestProvider(t *testing.T, cfg *Config) *Provider {
	t.Helper()
	remote := "sshdk" + randHex(4)
	p, err := New(cfg, Options{
		Remote:   remote,
		Progress: &bytes.Buffer{},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Every reachable engine: a test may have cut a host meanwhile.
		for _, addr := range p.hosts {
			e, err := p.engine(addr)
			if err != nil {
				continue
			}
			owned, err := e.ListOwned(ctx)
			if err != nil {
				continue
			}
			for _, o := range owned {
				if err := e.Terminate(ctx, provider.Ref{InstanceID: o.InstanceID, Remote: remote}); err != nil {
					t.Errorf("cleanup %s on %s: %v", o.InstanceID, addr, err)
				}
			}
		}
		p.Close()
	})
	return p
}

func TestIntegrationConformanceDocker(t *testing.T) {
	env := testenv.Require(t, "ssh", "docker")
	p := newDockerTestProvider(t, dockerTestConfig(env, env.SSH.DockerHost))
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Remote:    p.opts.Remote,
		Package:   providertest.ContainerPackage(env.Docker.Image),
		LogMarker: "listening on :8080",
		// The container's address is on ssh1's private Docker network:
		// reached from ssh1, through the SSH connection.
		Get: func(ctx context.Context, st provider.Status, path string) (int, error) {
			c, err := p.pool.get(ctx, p.hosts[0])
			if err != nil {
				return 0, err
			}
			return c.get(ctx, st.Address, path)
		},
		Timeout: time.Minute,
	})
}

// TestIntegrationDockerPlacement: the handle names the host; an
// unreachable host is skipped with a warning, never chosen; max_instances
// caps the remote over all hosts; Status and Terminate find the container
// by the host in its handle, or by searching when the handle is lost.
func TestIntegrationDockerPlacement(t *testing.T) {
	env := testenv.Require(t, "ssh", "docker")
	// 127.0.0.1:1 refuses at once: a host that is down.
	const other = "127.0.0.1:1"
	cfg := dockerTestConfig(env, other, env.SSH.DockerHost)
	cfg.MaxInstances = 1
	p := newDockerTestProvider(t, cfg)
	var logs syncBuffer
	p.logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pkg := providertest.ContainerPackage(env.Docker.Image)(t)
	req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: p.opts.Remote, Package: pkg, Env: map[string]string{"SECRET": "s3cret"}}
	h, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(h, []byte("s3cret")) {
		t.Fatal("handle holds an env value")
	}
	hd, err := decodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	if hd.Host != addrOf(env.SSH.DockerHost) || len(hd.Docker) == 0 {
		t.Fatalf("handle %s: want host %s and the docker handle", h, env.SSH.DockerHost)
	}
	if !strings.Contains(logs.String(), "host unreachable") || !strings.Contains(logs.String(), other) {
		t.Errorf("no warning about %s, whose engine is unreachable; log:\n%s", other, logs.String())
	}
	ref := provider.Ref{InstanceID: req.InstanceID, Remote: p.opts.Remote, Handle: h}
	waitRunning(ctx, t, p, ref)

	// A retried deploy is the same instance, not a second one.
	h2, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	if hd2, _ := decodeHandle(h2); hd2.Host != hd.Host {
		t.Errorf("redeploy moved the instance to %s", hd2.Host)
	}
	second := req
	second.InstanceID = providertest.NewInstanceID()
	if _, err := p.Deploy(ctx, second); !errors.Is(err, provider.ErrQuota) {
		t.Fatalf("second instance with max_instances 1: err = %v, want ErrQuota", err)
	}

	// Listing needs every host: the host that cannot be reached makes it
	// an error, not a short list reconcile would read as "gone".
	if _, err := p.ListOwned(ctx); err == nil {
		t.Error("ListOwned succeeded with a host's engine unreachable")
	}
	// Found without a handle too, by searching the hosts.
	if st, err := p.Status(ctx, provider.Ref{InstanceID: req.InstanceID, Remote: p.opts.Remote}); err != nil || st.State != provider.StateRunning {
		t.Errorf("status without handle: %+v, %v", st, err)
	}
	// Terminate with the host known from the handle works even though the
	// other host's engine is unreachable.
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Status(ctx, ref); err == nil {
		t.Error("status after terminate found the instance")
	}
}

// TestIntegrationDockerSharedEngine: in the testenv every host sees ssh1's
// engine socket (the namespaces share one filesystem), as two names of one
// machine would. The engine's containers are listed once, not per host.
func TestIntegrationDockerSharedEngine(t *testing.T) {
	env := testenv.Require(t, "ssh", "docker")
	var hosts []string
	hosts = append(hosts, env.SSH.DockerHost)
	for _, h := range env.SSH.Hosts {
		if h != env.SSH.DockerHost {
			hosts = append(hosts, h)
		}
	}
	p := newDockerTestProvider(t, dockerTestConfig(env, hosts...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pkg := providertest.ContainerPackage(env.Docker.Image)(t)
	req := provider.DeployRequest{InstanceID: providertest.NewInstanceID(), Remote: p.opts.Remote, Package: pkg}
	h, err := p.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ref := provider.Ref{InstanceID: req.InstanceID, Remote: p.opts.Remote, Handle: h}
	defer p.Terminate(context.Background(), ref)
	owned, err := p.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range owned {
		if o.InstanceID == req.InstanceID {
			n++
			if hd, _ := decodeHandle(o.Handle); hd.Host != addrOf(env.SSH.DockerHost) {
				t.Errorf("listed under host %s, want the first in config order %s", hd.Host, env.SSH.DockerHost)
			}
		}
	}
	if n != 1 {
		t.Fatalf("ListOwned lists the instance %d times over %d hosts sharing one engine, want once", n, len(hosts))
	}
}
