//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/testenv"
)

// TestIntegrationSSHEndToEnd is issue #7's end to end for the native
// runtime on a two-host remote: `bpm deploy --remote <ssh hosts> --package
// echo`, twice, uploads bpm and echo's binary, places the two instances on
// the two hosts, and starts a gateway on each host under `bpm supervise`
// (one hub peer per host: echo listens on its host's loopback only, which
// only a gateway on that host reaches). A request with a token goes through
// the auth proxy and the right host's tunnel to each echo. `bpm terminate`
// stops them and drops their routes.
func TestIntegrationSSHEndToEnd(t *testing.T) {
	tenv := testenv.Require(t, "ssh")
	s := tenv.SSH
	e := newEnv(t)
	hosts := s.Hosts[:2]
	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-ssh"
	e.useRemote(proxyPort, hubPort, s.HubAddr, sshNativeRemote(remote, s, hosts...))
	// The gateways outlive the remote's instances by design; the test's
	// must not outlive the test.
	t.Cleanup(func() {
		for _, h := range hosts {
			sshRun(t, s, h, "pkill -f '[.]bpm/gateway/"+remote+"' || true")
		}
	})
	e.startManager()

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	var insts []instance
	sites := map[string]bool{}
	for range 2 {
		var inst instance
		out := e.mustRun("deploy", "--remote", remote, "--package", e.pkg, "-o", "json")
		must(t, json.Unmarshal([]byte(out), &inst))
		got := e.waitState(inst.ID, "running")
		// Bound to the host's loopback: nothing listens on its network.
		if h, _, err := net.SplitHostPort(got.Address); err != nil || h != "127.0.0.1" {
			t.Errorf("address = %q, want a loopback address on the host", got.Address)
		}
		var st struct {
			Site string `json:"site"`
		}
		must(t, json.Unmarshal([]byte(e.mustRun("status", "--instance", inst.ID, "-o", "json")), &st))
		sites[st.Site] = true
		insts = append(insts, inst)
	}
	if len(sites) != 2 || sites[""] {
		t.Fatalf("sites of the two instances: %v, want one per host", sites)
	}
	var tun struct {
		Peers []struct {
			Remote string `json:"remote"`
		} `json:"peers"`
	}
	must(t, json.Unmarshal([]byte(e.mustRun("tunnel", "status", "-o", "json")), &tun))
	if len(tun.Peers) != 2 {
		t.Errorf("tunnel peers = %+v, want one per host", tun.Peers)
	}

	for _, inst := range insts {
		tok := e.tokenFor(proxy, inst.ServiceID)
		body := waitProxied(t, proxy+"/from-the-hub", tok)
		if !strings.Contains(body, `"path": "/from-the-hub"`) || !strings.Contains(body, `"SERVICE_ID": "`+fmt.Sprint(inst.ServiceID)+`"`) {
			t.Fatalf("through the proxy to %s: %s", inst.ID, body)
		}
		checkBridged(t, e, inst.ID)
		// "[b]p-…" keeps the remote shell running pgrep from matching itself.
		running := "pgrep -f '[b]" + inst.ID[1:] + "' || true"
		if out := sshRun(t, s, hosts[0], running); out == "" {
			t.Fatalf("pgrep finds no process of %s while it runs", inst.ID)
		}
		e.mustRun("terminate", inst.ID)
		if code, _ := proxied(t, proxy+"/after", tok); code == 200 {
			t.Error("the proxy still routes to a terminated instance")
		}
		// Nothing of the instance runs any more (the hosts share one
		// process table here, so one look covers both).
		if out := sshRun(t, s, hosts[0], running); out != "" {
			t.Errorf("processes of %s left: %s", inst.ID, out)
		}
	}
	if strings.Contains(e.managerLog(), "must-not-leak") {
		t.Error("the manager logged an environment value")
	}
}

// sshRun runs a fixed command on a test host with the system ssh client,
// checking its host key against the test environment's known_hosts.
func sshRun(t *testing.T, s testenv.SSH, hostport, command string) string {
	t.Helper()
	h, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh", "-F", os.DevNull, "-i", s.Key, "-p", port,
		"-o", "UserKnownHostsFile="+s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		s.User+"@"+h, command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("ssh %s %q: %v\n%s", hostport, command, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestIntegrationSSHDockerEndToEnd: the ssh provider's docker runtime, on
// the test host that runs a Docker engine. The image comes with the
// package (its container source's archive, loaded through the engine
// socket over SSH); the host's site gets its gateway container on that
// engine; a request with a token goes through the proxy and that tunnel to
// the container; terminate removes the container and, with the site's
// last instance, its gateway.
func TestIntegrationSSHDockerEndToEnd(t *testing.T) {
	tenv := testenv.Require(t, "ssh")
	s := tenv.SSH
	e := newEnv(t)
	// echo, as a container whose image ships in the package.
	pkg := filepath.Join(e.root, "echo-container")
	must(t, os.MkdirAll(pkg, 0o755))
	e.mustRun("package", "image", filepath.Join(repoRoot(t), "examples", "echo"), "-o", filepath.Join(pkg, "echo.tar"), "--tag", "bpm-e2e/echo:ssh")
	must(t, os.WriteFile(filepath.Join(pkg, "blueprint.toml"), []byte(`
name = "echo"
version = "0.1.0"
blueprint_id = 1

[[sources]]
kind = "container"
image = "bpm-e2e/echo:ssh"
archive = "echo.tar"
args = ["--listen", "0.0.0.0"]

[[ports]]
name = "http"
port = 8080

[env]
PORT = "8080"

[health]
http = "/healthz"
interval = "1s"
timeout = "500ms"
`), 0o644))
	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-sshdocker"
	e.useRemote(proxyPort, hubPort, s.HubAddr, strings.Replace(sshNativeRemote(remote, s, s.DockerHost),
		`type = "native"`, fmt.Sprintf("type = \"docker\"\ndocker_socket = \"unix://%s\"", s.DockerSocket), 1))
	e.startManager()

	var inst instance
	must(t, json.Unmarshal([]byte(e.mustRun("deploy", "--remote", remote, "--package", pkg, "-o", "json")), &inst))
	e.waitState(inst.ID, "running")
	var st struct {
		Site string `json:"site"`
	}
	must(t, json.Unmarshal([]byte(e.mustRun("status", "--instance", inst.ID, "-o", "json")), &st))
	if st.Site == "" {
		t.Fatal("the instance has no site: the docker runtime should run a gateway per host")
	}
	docker := func(args ...string) (string, error) {
		cmd := exec.Command("docker", append([]string{"-H", "unix://" + s.DockerSocket}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	gw := "bpm-gateway-" + remote + "." + st.Site
	if _, err := docker("inspect", gw); err != nil {
		t.Fatalf("the site's gateway container %s: %v", gw, err)
	}

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	tok := e.tokenFor(proxy, inst.ServiceID)
	body := waitProxied(t, proxy+"/over-ssh-docker", tok)
	if !strings.Contains(body, `"path": "/over-ssh-docker"`) {
		t.Fatalf("through the proxy: %s", body)
	}
	checkBridged(t, e, inst.ID)
	e.mustRun("terminate", inst.ID)
	for _, name := range []string{inst.ID, gw} {
		if _, err := docker("inspect", name); err == nil {
			t.Errorf("container %s still on the engine after the site's last instance", name)
		}
	}
	docker("image", "rm", "-f", "bpm-e2e/echo:ssh")
}

// checkBridged asserts that instance id registered through its bridge: the
// manager recorded its first ping, relayed by its gateway, and echo logged
// the registration.
func checkBridged(t *testing.T, e *env, id string) {
	t.Helper()
	if st := e.mustRun("status", "--instance", id); !strings.Contains(st, "pinged its bridge") {
		t.Errorf("%s: status shows no bridge ping:\n%s", id, st)
	}
	if logs := e.mustRun("logs", "--tail", "50", id); !strings.Contains(logs, "bridge: registered") {
		t.Errorf("%s: echo's logs show no registration through the bridge:\n%s", id, logs)
	}
}
