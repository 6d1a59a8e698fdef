package docker

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

// benchEnv is the plain engine, a provider on it and the docker CLI
// pointed at the same engine, for baselines measured in the same run.
type benchEnv struct {
	p      *Provider
	image  string
	host   string
	docker func(args ...string) (string, error)
	pkg    *blueprint.Package
}

func newBenchEnv(b *testing.B, remote string) *benchEnv {
	env := testenv.Require(b, "docker")
	c := NewConfig()
	c.Endpoint = env.Docker.Host
	p, err := New(remote, c, Options{Getenv: noEnv, Progress: &bytes.Buffer{}, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	cleanupRemote(b, p)
	b.Cleanup(func() { cleanupRemote(b, p) })
	cfgDir := b.TempDir()
	e := &benchEnv{p: p, image: env.Docker.Image, host: env.Docker.Host}
	e.docker = func(args ...string) (string, error) {
		cmd := exec.Command("docker", append([]string{"-H", env.Docker.Host}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfgDir)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	e.pkg = providertest.EchoPackage(b.TempDir(), env.Docker.Image)
	// Both sides find the image and the network in place: the targets are
	// about starting instances, not about first-time setup.
	if _, err := e.deploy(); err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *benchEnv) deploy() (provider.Ref, error) {
	ref := provider.Ref{InstanceID: providertest.NewInstanceID(), Remote: e.p.remote}
	_, err := e.p.Deploy(context.Background(), provider.DeployRequest{InstanceID: ref.InstanceID, Remote: ref.Remote,
		Package: e.pkg, Env: map[string]string{"GREETING": "bench"}})
	return ref, err
}

// run starts the baseline container the way an operator would by hand:
// `docker run -d` on the same network, image, limits and env.
func (e *benchEnv) run(name string) error {
	_, err := e.docker("run", "-d", "--name", name, "--network", e.p.networkName(), "--cpus", "0.5", "--memory", "64m",
		"--label", "bpm-bench=baseline", "-e", "GREETING=bench", e.image)
	return err
}

// BenchmarkIntegrationDockerDeployInitiation measures deploy initiation
// (issue 6: command → container created, ≤ 300 ms) beside `docker run -d`
// of the same image and config, in the same run. ns/op is the whole call
// (bpm's Deploy also starts the container, as docker run does);
// created-ms is the figure: from the call to the Created time the
// engine stamped on the container (same host, same clock).
func BenchmarkIntegrationDockerDeployInitiation(b *testing.B) {
	b.Run("bpm", func(b *testing.B) {
		e := newBenchEnv(b, "bench-init")
		var created time.Duration
		for b.Loop() {
			start := time.Now()
			ref, err := e.deploy()
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			created += e.createdSince(b, ref.InstanceID, start)
			if err := e.p.Terminate(context.Background(), ref); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(created.Microseconds())/1000/float64(b.N), "created-ms")
	})
	b.Run("docker-run", func(b *testing.B) {
		e := newBenchEnv(b, "bench-init-base")
		var created time.Duration
		for b.Loop() {
			name := "bpm-bench-" + providertest.NewInstanceID()
			start := time.Now()
			if err := e.run(name); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			created += e.createdSince(b, name, start)
			if out, err := e.docker("rm", "-f", name); err != nil {
				b.Fatalf("docker rm: %v %s", err, out)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(created.Microseconds())/1000/float64(b.N), "created-ms")
	})
}

// createdSince is how long after start the engine created container name.
func (e *benchEnv) createdSince(b *testing.B, name string, start time.Time) time.Duration {
	c, err := e.p.cli.containerInspect(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339Nano, c.Created)
	if err != nil {
		b.Fatalf("container %s: Created %q: %v", name, c.Created, err)
	}
	return at.Sub(start)
}

// BenchmarkIntegrationTimeToReady measures deploy → ready: bpm's Deploy,
// then Status until running (its health check passes), beside `docker run
// -d` and the same HTTP check polled at the container's address. Both poll
// every 20 ms. The proxy's share is measured by test/e2e's benchmark.
func BenchmarkIntegrationDockerTimeToReady(b *testing.B) {
	b.Run("bpm", func(b *testing.B) {
		e := newBenchEnv(b, "bench-ready")
		ctx := context.Background()
		for b.Loop() {
			ref, err := e.deploy()
			if err != nil {
				b.Fatal(err)
			}
			for {
				st, err := e.p.Status(ctx, ref)
				if err != nil || st.State == provider.StateFailed {
					b.Fatalf("status %+v %v", st, err)
				}
				if st.State == provider.StateRunning {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.StopTimer()
			if err := e.p.Terminate(ctx, ref); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("docker-run", func(b *testing.B) {
		e := newBenchEnv(b, "bench-ready-base")
		hc := http.Client{Timeout: time.Second}
		for b.Loop() {
			name := "bpm-bench-" + providertest.NewInstanceID()
			if err := e.run(name); err != nil {
				b.Fatal(err)
			}
			ip, err := e.docker("inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, e.p.networkName()), name)
			if err != nil || ip == "" {
				b.Fatalf("inspect: %q %v", ip, err)
			}
			for {
				resp, err := hc.Get("http://" + ip + ":8080/")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.StopTimer()
			if out, err := e.docker("rm", "-f", name); err != nil {
				b.Fatalf("docker rm: %v %s", err, out)
			}
			b.StartTimer()
		}
	})
}
