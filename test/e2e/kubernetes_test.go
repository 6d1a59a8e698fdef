//go:build !bpm_noremote

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/testenv"
)

// TestIntegrationKubernetesEndToEnd is issue #8's end to end: with the
// gateway image (`bpm gateway image`) and echo's (`bpm package image`)
// imported into the cluster's containerd, `bpm deploy --remote <context>
// --package examples/echo` starts the gateway and the pod; a request with a
// token goes through the auth proxy and the tunnel to the pod; and `bpm
// terminate` removes every object bpm made for the instance, as the real
// kubectl sees it.
func TestIntegrationKubernetesEndToEnd(t *testing.T) {
	tenv := testenv.Require(t, "kubernetes")
	kubectlBin, importBin := tenv.Var("BPM_TEST_KUBECTL"), tenv.Var("BPM_TEST_K8S_IMPORT")
	e := newEnv(t)
	pkg := filepath.Join(repoRoot(t), "examples", "echo")

	// Both images, as an operator of a cluster without a registry makes them.
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	// One tag, re-imported each run, so the node does not collect images.
	const gwRef = "localhost/bpm-e2e/gateway:e2e"
	gwTar, echoTar := filepath.Join(e.root, "gw.tar"), filepath.Join(e.root, "echo.tar")
	e.mustRun("gateway", "image", "-o", gwTar, "--tag", gwRef)
	e.mustRun("package", "image", pkg, "-o", echoTar)
	if out, err := exec.Command(importBin, gwTar, echoTar).CombinedOutput(); err != nil {
		t.Fatalf("import images: %v\n%s", err, out)
	}

	ns := "bpm-e2e-" + suffix
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", tenv.Kubernetes.Kubeconfig,
			"--context", tenv.Var("BPM_TEST_K8S_CONTEXT_A")}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	t.Cleanup(func() { kubectl("delete", "namespace", ns, "--wait=false") })

	proxyPort, hubPort := freePort(t), freeUDPPort(t)
	const remote = "e2e-k8s"
	cfg := fmt.Sprintf(`
[manager]
data_dir = %q
runtime_dir = %q
log_level = "debug"

[proxy]
listen = "127.0.0.1:%d"

# Pods reach the hub on the node's address, not on loopback.
[hub]
listen = "0.0.0.0:%d"
endpoint = "%s:%d"

[remote.%s]
type = "kubernetes"
kubeconfig = %q
context = %q
namespace = %q
gateway_image = %q
gateway_pull_policy = "Never"
`, filepath.Join(e.root, "data"), filepath.Join(e.root, "run"), proxyPort, hubPort, tenv.Var("BPM_TEST_K8S_HUB_ADDR"), hubPort,
		remote, tenv.Kubernetes.Kubeconfig, tenv.Var("BPM_TEST_K8S_CONTEXT_A"), ns, gwRef)
	must(t, os.WriteFile(filepath.Join(e.root, "cfg", "config.toml"), []byte(cfg), 0o600))
	e.vars = append(e.vars, "BPM_KEYSTORE_PASSPHRASE=e2e passphrase")
	e.startManager()

	var inst instance
	out := e.mustRun("deploy", "--remote", remote, "--package", pkg, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &inst))
	e.waitState(inst.ID, "running")
	sel := "bpm.instance=" + inst.ID
	if pods, err := kubectl("get", "pods", "-n", ns, "-l", sel, "-o", "name"); err != nil || pods == "" {
		t.Fatalf("kubectl sees no pod for %s: %q %v", inst.ID, pods, err)
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

	e.mustRun("terminate", inst.ID)
	kinds := "deployments,statefulsets,replicasets,pods,services,secrets,networkpolicies,persistentvolumeclaims"
	var left string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if left, err = kubectl("get", kinds, "-n", ns, "-l", sel, "-o", "name"); err == nil && left == "" {
			break
		}
	}
	if err != nil || left != "" {
		t.Errorf("objects of %s left after terminate (%v):\n%s", inst.ID, err, left)
	}
	if code, _ := proxied(t, proxy+"/after", strings.TrimSpace(string(tok))); code == 200 {
		t.Error("the proxy still routes to a terminated instance")
	}
}
