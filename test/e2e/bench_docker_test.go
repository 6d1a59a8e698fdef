//go:build !bpm_noremote

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/testenv"
)

// proxyBench is a running manager with one remote, driven through its API
// the way `bpm deploy` and `bpm auth` drive it.
type proxyBench struct {
	b      *testing.B
	c      *api.Client
	proxy  string
	remote string
	pkg    string
	hc     *http.Client
	anchor api.Instance // deployed first by run, kept to the end
}

// newProxyBench starts e's manager (its config already names remote).
func newProxyBench(b *testing.B, e *env, proxyPort int, remote, pkg string) *proxyBench {
	e.startManager()
	return &proxyBench{b: b, c: api.NewClient(filepath.Join(e.root, "run", "manager.sock")),
		proxy: fmt.Sprintf("http://127.0.0.1:%d", proxyPort), remote: remote, pkg: pkg, hc: &http.Client{Timeout: 2 * time.Second}}
}

func (p *proxyBench) ok(url, token string) bool {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// deployReady deploys the package and returns once a request through the
// proxy answers 200 — minting an API key and exchanging it for a token on
// the way, as an operator does — with how long the deploy call took.
func (p *proxyBench) deployReady() (api.Instance, time.Duration) {
	b, ctx := p.b, context.Background()
	start := time.Now()
	in, err := p.c.Deploy(ctx, api.DeployRequest{PackagePath: p.pkg, Remote: p.remote})
	if err != nil {
		b.Fatal(err)
	}
	deployed := time.Since(start)
	sid := in.ServiceID
	// A key can be minted once the instance has a route (it answers); a
	// pod takes a moment longer than a container.
	var key authclient.APIKey
	var token string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if key == (authclient.APIKey{}) {
			if created, err := p.c.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid, Label: "bench"}); err == nil {
				if key, err = authclient.ParseAPIKey(created.APIKey.Reveal()); err != nil {
					b.Fatal(err)
				}
			}
		}
		if key != (authclient.APIKey{}) && token == "" {
			if tok, err := authclient.Exchange(ctx, p.proxy, key, 0); err == nil {
				token = tok.Token.Reveal()
			}
		}
		if token != "" && p.ok(p.proxy+"/", token) {
			return in, deployed
		}
		if time.Now().After(deadline) {
			b.Fatalf("instance %s: no answer through the proxy", in.ID)
		}
	}
}

// run is the bpm side of a ready-through-proxy benchmark: an anchor
// instance first keeps the gateway up (the issues' condition), then each
// iteration deploys until a request answers through the proxy.
func (p *proxyBench) run(b *testing.B) {
	p.b = b
	p.anchor, _ = p.deployReady()
	var deploying time.Duration
	for b.Loop() {
		in, d := p.deployReady()
		deploying += d
		b.StopTimer()
		if _, err := p.c.Terminate(context.Background(), in.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	// The deploy call's share, to tell the provider's time from the
	// proxy's and the tunnel's.
	b.ReportMetric(float64(deploying.Milliseconds())/float64(b.N), "deploy-ms")
}

// BenchmarkIntegrationDockerReadyThroughProxy measures issue 6's second
// target: deploy → the first request answered through the auth proxy and
// the tunnel, on an engine whose gateway is already up, beside `docker run
// -d` of the same image plus the same HTTP check polled at the container's
// address. Both poll every 20 ms; target ≤ 1.3× the baseline (scripts/bench
// --remote).
func BenchmarkIntegrationDockerReadyThroughProxy(b *testing.B) {
	d := testenv.Require(b, "docker").Docker
	e := newEnv(b)
	pkg := filepath.Join(repoRoot(b), "examples", "echo")
	archive := filepath.Join(e.root, "echo.tar")
	e.mustRun("package", "image", pkg, "-o", archive)
	proxyPort := freePort(b)
	const remote = "bench-proxy"
	// The plain engine, whose containers this host also reaches directly
	// (the baseline's check).
	e.useRemote(proxyPort, freeUDPPort(b), d.BridgeGateway, fmt.Sprintf(`
[remote.%s]
type = "docker"
endpoint = %q
image_archives = { %q = %q }
`, remote, d.Host, echoImage, archive))
	p := newProxyBench(b, e, proxyPort, remote, pkg)
	b.Run("bpm", p.run)
	b.Run("docker-run", func(b *testing.B) {
		dcfg := b.TempDir()
		docker := func(args ...string) string {
			cmd := exec.Command("docker", append([]string{"-H", d.Host}, args...)...)
			cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dcfg)
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("docker %v: %v\n%s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		network := "bpm-" + remote
		for b.Loop() {
			name := "bpm-bench-base-" + fmt.Sprint(time.Now().UnixNano())
			docker("run", "-d", "--name", name, "--network", network, "--cpus", "0.1", "--memory", "64m",
				"-e", "PORT=8080", echoImage, "--listen", "0.0.0.0")
			ip := docker("inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, network), name)
			for deadline := time.Now().Add(time.Minute); !p.ok("http://"+ip+":8080/healthz", ""); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("baseline container %s never answered", name)
				}
			}
			b.StopTimer()
			docker("rm", "-f", name)
			b.StartTimer()
		}
	})
}
