//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/testenv"
)

// echoImage is examples/echo's container source.
const echoImage = "bpm.local/echo:0.1.0"

// docker runs the docker CLI against the test environment's TLS engine.
func dockerTLS(t *testing.T, d testenv.Docker, args ...string) (string, error) {
	t.Helper()
	base := []string{"--tlsverify", "--tlscacert", d.TLSCA, "--tlscert", d.TLSCert, "--tlskey", d.TLSKey, "-H", d.TLSHost}
	cmd := exec.Command("docker", append(base, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestIntegrationDockerEndToEnd is issue #6's end to end: `bpm deploy
// --remote <TLS engine> --package examples/echo` loads the image `bpm
// package image` built, starts the gateway container, and echo registers
// through its bridge (the gateway's socket in the shared volume, relayed
// over the tunnel); a request with a token goes through the auth proxy and
// the tunnel to the container. `bpm terminate` removes the container, the
// route, and with the remote's last instance the gateway, network and
// volume.
func TestIntegrationDockerEndToEnd(t *testing.T) {
	tenv := testenv.Require(t, "docker")
	d := tenv.Docker
	e := newEnv(t)
	root := repoRoot(t)
	pkg := filepath.Join(root, "examples", "echo")
	archive := filepath.Join(e.root, "echo.tar")
	e.mustRun("package", "image", pkg, "-o", archive)
	// A stale image from an earlier run would hide a broken load.
	dockerTLS(t, d, "image", "rm", "-f", echoImage)

	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-tls"
	e.useRemote(proxyPort, hubPort, d.BridgeGateway, dockerTLSRemote(remote, d, archive))
	e.startManager()

	// A package the engine cannot run (no container source) is refused
	// before anything is recorded or started: no row, no gateway.
	if _, errs, code := e.run("deploy", "--remote", remote, "--package", e.pkg); code != 6 || !strings.Contains(errs, "container source") {
		t.Fatalf("deploy of a package without a container source: exit %d, %s; want 6 naming it", code, errs)
	}
	if all := e.list(true); len(all) != 0 {
		t.Fatalf("a refused package recorded %+v", all)
	}
	if _, err := dockerTLS(t, d, "inspect", "bpm-gateway-"+remote); err == nil {
		t.Fatal("a refused package started the remote's gateway")
	}

	var inst instance
	out := e.mustRun("deploy", "--remote", remote, "--package", pkg, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &inst))
	t.Cleanup(func() { dockerTLS(t, d, "rm", "-f", inst.ID) })
	e.waitState(inst.ID, "running")

	// No published ports: the container answers only on its network.
	if ports, err := dockerTLS(t, d, "port", inst.ID); err != nil || ports != "" {
		t.Errorf("docker port %s = %q, %v; want no published ports", inst.ID, ports, err)
	}
	// Labels say whose it is.
	labels, err := dockerTLS(t, d, "inspect", "-f", "{{json .Config.Labels}}", inst.ID)
	if err != nil || !strings.Contains(labels, `"bpm.instance":"`+inst.ID+`"`) || !strings.Contains(labels, `"bpm.remote":"`+remote+`"`) {
		t.Errorf("labels = %s, %v", labels, err)
	}

	// Operator key -> token -> a request through the proxy and the tunnel.
	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	tok := e.tokenFor(proxy, inst.ServiceID)
	body := waitProxied(t, proxy+"/from-the-hub", tok)
	if !strings.Contains(body, `"path": "/from-the-hub"`) || !strings.Contains(body, `"SERVICE_ID": "`+fmt.Sprint(inst.ServiceID)+`"`) {
		t.Fatalf("through the proxy: %s", body)
	}
	// The request reached the container because echo registered itself
	// through its bridge (the manager's fallback route would also work,
	// but the event says the bridge was used).
	events := e.mustRun("status", "--instance", inst.ID)
	if !strings.Contains(events, "pinged its bridge") {
		t.Errorf("status shows no bridge ping from the container:\n%s", events)
	}
	if logs := e.mustRun("logs", "--tail", "50", inst.ID); !strings.Contains(logs, "bridge: registered") {
		t.Errorf("echo's logs show no registration through the bridge:\n%s", logs)
	}
	if strings.Contains(e.managerLog(), "must-not-leak") {
		t.Error("the manager logged an environment value")
	}

	e.mustRun("terminate", inst.ID)
	if _, err := dockerTLS(t, d, "inspect", inst.ID); err == nil {
		t.Error("the container survived terminate")
	}
	for _, obj := range [][]string{
		{"inspect", "bpm-gateway-" + remote},
		{"network", "inspect", "bpm-" + remote},
		{"volume", "inspect", "bpm-" + remote + "-bridge"},
	} {
		if _, err := dockerTLS(t, d, obj...); err == nil {
			t.Errorf("docker %s: still there after the last instance was terminated", strings.Join(obj, " "))
		}
	}
	code, _ := proxied(t, proxy+"/after", tok)
	if code == http.StatusOK {
		t.Error("the proxy still routes to a terminated instance")
	}
}

// waitProxied retries a proxied GET until it answers 200 (the route and the
// tunnel come up a moment after the instance runs) and returns the body.
func waitProxied(t *testing.T, url, token string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		code, body = proxied(t, url, token)
		if code == http.StatusOK {
			return body
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("GET %s through the proxy: %d %s", url, code, body)
	return ""
}

func proxied(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIntegrationDockerRegionsEndToEnd: a docker remote with two regions,
// each its own engine (a: the plain engine, b: the TLS one). `bpm deploy
// --region b` lands on b's engine, the primary takes the other; each region
// runs its own gateway, a hub peer of its own, and a request through the
// proxy reaches each instance through its region's tunnel. An unknown
// region is refused before anything is recorded.
func TestIntegrationDockerRegionsEndToEnd(t *testing.T) {
	d := testenv.Require(t, "docker").Docker
	e := newEnv(t)
	pkg := filepath.Join(repoRoot(t), "examples", "echo")
	archive := filepath.Join(e.root, "echo.tar")
	e.mustRun("package", "image", pkg, "-o", archive)
	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-regions"
	// Region a is the plain engine (the remote's endpoint), b the TLS one.
	e.useRemote(proxyPort, hubPort, d.BridgeGateway, strings.Replace(dockerTLSRemote(remote, d, archive), d.TLSHost, d.Host, 1)+fmt.Sprintf(`
[remote.%s.regions]
primary = "a"
replicas = ["b"]
endpoints = { b = %q }
`, remote, d.TLSHost))
	e.startManager()

	if _, errs, code := e.run("deploy", "--remote", remote, "--region", "mars", "--package", pkg); code != 6 || !strings.Contains(errs, `"mars"`) {
		t.Fatalf("unknown region: exit %d, %s; want 6 naming it", code, errs)
	}
	if all := e.list(true); len(all) != 0 {
		t.Fatalf("a refused region recorded %+v", all)
	}

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	for _, region := range []string{"b", ""} {
		args := []string{"deploy", "--remote", remote, "--package", pkg, "-o", "json"}
		if region != "" {
			args = append(args, "--region", region)
		}
		var inst instance
		must(t, json.Unmarshal([]byte(e.mustRun(args...)), &inst))
		e.waitState(inst.ID, "running")
		want := region
		if want == "" {
			want = "a"
		}
		var st struct {
			Site string `json:"site"`
		}
		must(t, json.Unmarshal([]byte(e.mustRun("status", "--instance", inst.ID, "-o", "json")), &st))
		if st.Site != want {
			t.Errorf("%s: site %q, want region %s", inst.ID, st.Site, want)
		}
		// On that region's engine, and not the other's.
		_, onTLS := dockerTLS(t, d, "inspect", inst.ID)
		if (onTLS == nil) != (want == "b") {
			t.Errorf("%s: on the TLS engine: %v, want %v", inst.ID, onTLS == nil, want == "b")
		}
		tok := e.tokenFor(proxy, inst.ServiceID)
		body := waitProxied(t, proxy+"/region", tok)
		if !strings.Contains(body, `"SERVICE_ID": "`+fmt.Sprint(inst.ServiceID)+`"`) {
			t.Fatalf("through the proxy to %s: %s", inst.ID, body)
		}
	}
	var tun struct {
		Peers []struct {
			Remote string `json:"remote"`
		} `json:"peers"`
	}
	must(t, json.Unmarshal([]byte(e.mustRun("tunnel", "status", "-o", "json")), &tun))
	var peers []string
	for _, p := range tun.Peers {
		peers = append(peers, p.Remote)
	}
	slices.Sort(peers)
	if !slices.Equal(peers, []string{remote + ".a", remote + ".b"}) {
		t.Errorf("tunnel peers = %v, want one per region", peers)
	}
	// Region b's own gateway and network, on its engine; gone with its
	// last instance.
	regionB := [][]string{
		{"inspect", "bpm-gateway-" + remote + ".b"},
		{"network", "inspect", "bpm-" + remote + ".b"},
	}
	for _, obj := range regionB {
		if _, err := dockerTLS(t, d, obj...); err != nil {
			t.Errorf("docker %s: not on the TLS engine while region b runs an instance: %v", strings.Join(obj, " "), err)
		}
	}
	for _, in := range e.list(false) {
		e.mustRun("terminate", in.ID)
	}
	for _, obj := range regionB {
		if _, err := dockerTLS(t, d, obj...); err == nil {
			t.Errorf("docker %s: still on the TLS engine after its region's last instance", strings.Join(obj, " "))
		}
	}
}
