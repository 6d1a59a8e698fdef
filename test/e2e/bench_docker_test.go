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

// BenchmarkIntegrationDockerReadyThroughProxy measures issue 6's second
// target: deploy → the first request answered through the auth proxy and
// the tunnel, on an engine whose gateway is already up (an anchor instance
// keeps it), beside `docker run -d` of the same image plus the same HTTP
// check polled at the container's address. bpm's side includes minting an
// API key and exchanging it for a token, which an operator does too. Both
// poll every 20 ms; target ≤ 1.3× the baseline (scripts/bench --remote).
func BenchmarkIntegrationDockerReadyThroughProxy(b *testing.B) {
	tenv := testenv.Require(b, "docker")
	d := tenv.Docker
	root, err := os.MkdirTemp("", "bpm-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	pkg := filepath.Join(repoRoot(b), "examples", "echo")
	archive := filepath.Join(root, "echo.tar")
	cfgDir := filepath.Join(root, "cfg")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		b.Fatal(err)
	}
	proxyPort, hubPort := freePort(b), freeUDPPort(b)
	const remote = "bench-proxy"
	cfg := fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q

[proxy]
listen = "127.0.0.1:%d"

[hub]
listen = "0.0.0.0:%d"
endpoint = "%s:%d"

[remote.%s]
type = "docker"
endpoint = %q
image_archives = { %q = %q }
`, filepath.Join(root, "data"), filepath.Join(root, "run"), proxyPort, hubPort, d.BridgeGateway, hubPort,
		remote, d.Host, echoImage, archive)
	if err := os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	vars := append(os.Environ(), "BPM_CONFIG_DIR="+cfgDir, "BPM_KEYSTORE_PASSPHRASE=bench")
	bpm := func(args ...string) {
		cmd := exec.Command(bpmBin, args...)
		cmd.Env = vars
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("bpm %v: %v\n%s", args, err, out)
		}
	}
	bpm("package", "image", pkg, "-o", archive)
	mgr := exec.Command(bpmBin, "manager")
	mgr.Env = vars
	logf, err := os.Create(filepath.Join(root, "manager.log"))
	if err != nil {
		b.Fatal(err)
	}
	mgr.Stdout, mgr.Stderr = logf, logf
	if err := mgr.Start(); err != nil {
		b.Fatal(err)
	}
	c := api.NewClient(filepath.Join(root, "run", "manager.sock"))
	ctx := context.Background()
	b.Cleanup(func() {
		list, _ := c.List(ctx, api.ListOptions{})
		for _, in := range list {
			c.Terminate(ctx, in.ID)
		}
		mgr.Process.Signal(os.Interrupt)
		mgr.Wait()
		logf.Close()
		if b.Failed() {
			log, _ := os.ReadFile(logf.Name())
			b.Logf("manager log:\n%s", log)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := c.List(ctx, api.ListOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("manager did not answer")
		}
	}
	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	hc := &http.Client{Timeout: 2 * time.Second}
	getOK := func(url, token string) bool {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	// deployReady deploys echo and returns once a request through the proxy
	// answers 200, and how long the deploy call itself took.
	deployReady := func() (api.Instance, time.Duration) {
		start := time.Now()
		in, err := c.Deploy(ctx, api.DeployRequest{PackagePath: pkg, Remote: remote})
		if err != nil {
			b.Fatal(err)
		}
		deployed := time.Since(start)
		sid := in.ServiceID
		created, err := c.CreateAuthKey(ctx, api.AuthKeyRequest{ServiceID: &sid, Label: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		key, err := authclient.ParseAPIKey(created.APIKey.Reveal())
		if err != nil {
			b.Fatal(err)
		}
		var token string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if token == "" {
				if tok, err := authclient.Exchange(ctx, proxy, key, 0); err == nil {
					token = tok.Token.Reveal()
				}
			}
			if token != "" && getOK(proxy+"/", token) {
				return in, deployed
			}
			if time.Now().After(deadline) {
				b.Fatalf("instance %s: no answer through the proxy", in.ID)
			}
		}
	}
	// The anchor keeps the gateway (and the image) warm.
	deployReady()

	b.Run("bpm", func(b *testing.B) {
		// The deploy call's share of the total, to tell the provider's
		// time from the proxy's and the tunnel's.
		var deploying time.Duration
		for b.Loop() {
			in, d := deployReady()
			deploying += d
			b.StopTimer()
			if _, err := c.Terminate(ctx, in.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(deploying.Milliseconds())/float64(b.N), "deploy-ms")
	})
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
			for deadline := time.Now().Add(time.Minute); !getOK("http://"+ip+":8080/healthz", ""); time.Sleep(20 * time.Millisecond) {
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
