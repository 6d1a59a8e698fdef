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
// runtime: `bpm deploy --remote <ssh host> --package echo` uploads bpm and
// echo's binary, starts the gateway on the host under `bpm supervise`, and a
// request with a token goes through the auth proxy and the tunnel to echo,
// which listens on the host's loopback only. `bpm terminate` stops echo and
// drops its route. The remote has one host: the gateway reaches instances
// on its own host's loopback (see docs/ARCHITECTURE.md, the SSH provider).
func TestIntegrationSSHEndToEnd(t *testing.T) {
	tenv := testenv.Require(t, "ssh")
	s := tenv.SSH
	e := newEnv(t)
	host := s.Hosts[1]
	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-ssh"
	cfg := fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q
log_level = "debug"

[proxy]
listen = "127.0.0.1:%d"

[hub]
listen = "0.0.0.0:%d"
endpoint = "%s:%d"

[remote.%s]
type = "ssh"
hosts = [%q]
user = %q
key = %q
known_hosts = %q
ssh_config = %q

[remote.%s.runtime]
type = "native"
`, filepath.Join(e.root, "data"), filepath.Join(e.root, "run"), proxyPort, hubPort, s.HubAddr, hubPort,
		remote, host, s.User, s.Key, s.KnownHosts, os.DevNull, remote)
	must(t, os.WriteFile(filepath.Join(e.root, "cfg", "config.toml"), []byte(cfg), 0o600))
	e.vars = append(e.vars, "BPM_KEYSTORE_PASSPHRASE=e2e passphrase")
	// The gateway outlives the remote's instances by design; the test's
	// must not outlive the test.
	t.Cleanup(func() { sshRun(t, s, host, "pkill -f '[.]bpm/gateway/"+remote+"' || true") })
	e.startManager()

	var inst instance
	out := e.mustRun("deploy", "--remote", remote, "--package", e.pkg, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &inst))
	got := e.waitState(inst.ID, "running")
	// Bound to the host's loopback: nothing listens on its network.
	if h, _, err := net.SplitHostPort(got.Address); err != nil || h != "127.0.0.1" {
		t.Errorf("address = %q, want a loopback address on the host", got.Address)
	}

	proxy := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	dir := t.TempDir()
	keyFile, tokFile := filepath.Join(dir, "api.key"), filepath.Join(dir, "token")
	e.mustRun("auth", "key", "create", "--service-id", fmt.Sprint(inst.ServiceID), "--save", keyFile)
	e.mustRun("auth", "token", "--proxy", proxy, "--api-key-file", keyFile, "--save", tokFile)
	tok, err := os.ReadFile(tokFile)
	must(t, err)
	body := waitProxied(t, proxy+"/from-the-hub", strings.TrimSpace(string(tok)))
	if !strings.Contains(body, `"path": "/from-the-hub"`) || !strings.Contains(body, `"SERVICE_ID": "`+fmt.Sprint(inst.ServiceID)+`"`) {
		t.Fatalf("through the proxy: %s", body)
	}
	if strings.Contains(e.managerLog(), "must-not-leak") {
		t.Error("the manager logged an environment value")
	}

	// "[b]p-…" keeps the remote shell running pgrep from matching itself.
	running := "pgrep -f '[b]" + inst.ID[1:] + "' || true"
	if out := sshRun(t, s, host, running); out == "" {
		t.Fatalf("pgrep finds no process of %s on %s while it runs", inst.ID, host)
	}
	e.mustRun("terminate", inst.ID)
	if code, _ := proxied(t, proxy+"/after", strings.TrimSpace(string(tok))); code == 200 {
		t.Error("the proxy still routes to a terminated instance")
	}
	// Nothing of the instance runs on the host any more.
	if out := sshRun(t, s, host, running); out != "" {
		t.Errorf("processes of %s left on %s: %s", inst.ID, host, out)
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
