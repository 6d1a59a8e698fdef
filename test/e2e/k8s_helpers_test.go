//go:build !bpm_noremote

package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/testenv"
)

// k8sTarget is a fresh namespace of the test cluster's first context, with
// the gateway and echo images imported into the node's containerd the way
// an operator of a cluster without a registry does it.
type k8sTarget struct {
	env   *testenv.Env
	ns    string
	gwRef string
}

// The images are the same for every test in a run: import them once.
var (
	k8sImagesOnce sync.Once
	k8sImagesErr  error
)

// One tag, re-imported each run, so the node does not collect images.
const k8sGatewayRef = "localhost/bpm-e2e/gateway:e2e"

func newK8sTarget(t testing.TB) *k8sTarget {
	t.Helper()
	tenv := testenv.Require(t, "kubernetes")
	k8sImagesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bpm-e2e-img-")
		if err != nil {
			k8sImagesErr = err
			return
		}
		defer os.RemoveAll(dir)
		gwTar, echoTar := filepath.Join(dir, "gw.tar"), filepath.Join(dir, "echo.tar")
		for _, args := range [][]string{
			{"gateway", "image", "-o", gwTar, "--tag", k8sGatewayRef},
			{"package", "image", filepath.Join(repoRoot(t), "examples", "echo"), "-o", echoTar},
		} {
			if out, err := exec.Command(bpmBin, args...).CombinedOutput(); err != nil {
				k8sImagesErr = fmt.Errorf("bpm %v: %v\n%s", args, err, out)
				return
			}
		}
		if out, err := exec.Command(tenv.Var("BPM_TEST_K8S_IMPORT"), gwTar, echoTar).CombinedOutput(); err != nil {
			k8sImagesErr = fmt.Errorf("import images: %v\n%s", err, out)
		}
	})
	if k8sImagesErr != nil {
		t.Fatal(k8sImagesErr)
	}
	b := make([]byte, 4)
	rand.Read(b)
	k := &k8sTarget{env: tenv, ns: "bpm-e2e-" + hex.EncodeToString(b), gwRef: k8sGatewayRef}
	t.Cleanup(func() { k.kubectl("delete", "namespace", k.ns, "--wait=false") })
	return k
}

// kubectl runs the real kubectl against the target's context.
func (k *k8sTarget) kubectl(args ...string) (string, error) {
	cmd := exec.Command(k.env.Var("BPM_TEST_KUBECTL"), append([]string{"--kubeconfig", k.env.Kubernetes.Kubeconfig,
		"--context", k.env.Var("BPM_TEST_K8S_CONTEXT_A")}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// use makes the target e's remote: pods reach the hub on the node's
// address.
func (k *k8sTarget) use(e *env, remote string, proxyPort, hubPort int) {
	e.useRemote(proxyPort, hubPort, k.env.Var("BPM_TEST_K8S_HUB_ADDR"), fmt.Sprintf(`
[remote.%s]
type = "kubernetes"
kubeconfig = %q
context = %q
namespace = %q
gateway_image = %q
gateway_pull_policy = "Never"
`, remote, k.env.Kubernetes.Kubeconfig, k.env.Var("BPM_TEST_K8S_CONTEXT_A"), k.ns, k.gwRef))
}

// instanceKinds are every kind of object bpm makes for an instance.
const instanceKinds = "deployments,statefulsets,replicasets,pods,services,secrets,networkpolicies,persistentvolumeclaims"

// instanceObjects lists the objects in the namespace carrying
// bpm.instance=id, or every instance's objects for id "".
func (k *k8sTarget) instanceObjects(t *testing.T, id string) []string {
	t.Helper()
	sel := "bpm.instance"
	if id != "" {
		sel += "=" + id
	}
	out, err := k.kubectl("get", instanceKinds, "-n", k.ns, "-l", sel, "-o",
		`jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.labels.bpm\.instance}{"\n"}{end}`)
	if err != nil {
		t.Fatalf("kubectl get: %v: %s", err, out)
	}
	return strings.Fields(out)
}

// checkBridge proves that instance id, running as a pod of remote, reached
// its bridge from inside the pod: the manager recorded the bridge's first
// ping through the remote's gateway, and echo logged its registration. It
// also checks how: the pod runs the bpm-bridge sidecar, the relay token is
// in the sidecar's Secret only (not in the Secret the service imports),
// and no log — the manager's, the gateway's, the sidecar's — nor `bpm
// status` shows it.
func (k *k8sTarget) checkBridge(t *testing.T, e *env, id, remote string) {
	t.Helper()
	var events string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if events = e.mustRun("status", "--instance", id); strings.Contains(events, "the service pinged its bridge through the "+remote+" gateway") {
			break
		}
	}
	if !strings.Contains(events, "the service pinged its bridge through the "+remote+" gateway") {
		t.Errorf("status shows no bridge ping from the pod:\n%s", events)
	}
	// Echo pings first (the event), then registers and logs it.
	var logs string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if logs = e.mustRun("logs", "--tail", "50", id); strings.Contains(logs, "bridge: registered") {
			break
		}
	}
	if !strings.Contains(logs, "bridge: registered") {
		t.Errorf("echo's logs show no registration through the bridge:\n%s", logs)
	}

	if out, err := k.kubectl("get", "pods", "-n", k.ns, "-l", "bpm.instance="+id, "-o",
		`jsonpath={.items[*].spec.initContainers[*].name} {.items[*].spec.initContainers[*].restartPolicy}`); err != nil || out != "bpm-bridge Always" {
		t.Errorf("the pod's sidecar: %q (%v), want bpm-bridge as a native sidecar", out, err)
	}
	keys, err := k.kubectl("get", "secret", "bpm-"+id, "-n", k.ns, "-o", "jsonpath={.data}")
	if err != nil || strings.Contains(keys, "BPM_BRIDGE_RELAY_TOKEN") || !strings.Contains(keys, "BRIDGE_SOCKET_PATH") {
		t.Errorf("the service's Secret: %v, want BRIDGE_SOCKET_PATH and no relay token", err)
	}
	enc, err := k.kubectl("get", "secret", "bpm-"+id+"-bridge", "-n", k.ns, "-o", "jsonpath={.data.BPM_BRIDGE_RELAY_TOKEN}")
	if err != nil {
		t.Fatalf("the sidecar's Secret: %v: %s", err, enc)
	}
	tok, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(tok) < 32 {
		t.Fatalf("the sidecar's token: %d bytes (%v)", len(tok), err)
	}
	if out, err := k.kubectl("get", "networkpolicy", gatewayObjectName(remote), "-n", k.ns, "-o",
		`jsonpath={.spec.ingress[*].ports[*].port} {.spec.ingress[*].from[*].podSelector.matchExpressions[*].key}`); err != nil || out != "bridge-relay bpm.instance" {
		t.Errorf("the gateway's NetworkPolicy: %q (%v), want the relay port from instance pods only", out, err)
	}
	gwLogs, _ := k.kubectl("logs", "-n", k.ns, "deployment/"+gatewayObjectName(remote))
	sideLogs, _ := k.kubectl("logs", "-n", k.ns, "deployment/bpm-"+id, "-c", "bpm-bridge")
	if !strings.Contains(gwLogs, "bridge relay endpoint up") || !strings.Contains(sideLogs, "bridge relay up") {
		t.Errorf("gateway or sidecar logs do not show the relay:\n%s\n--\n%s", gwLogs, sideLogs)
	}
	for where, text := range map[string]string{"manager log": e.managerLog(), "gateway log": gwLogs,
		"sidecar log": sideLogs, "bpm status": events, "bpm list": e.mustRun("list", "-o", "json")} {
		if strings.Contains(text, string(tok)) {
			t.Errorf("the relay token is in the %s", where)
		}
	}
}

// gatewayObjectName is the provider's name for a remote's gateway objects
// (for remote names without "_").
func gatewayObjectName(remote string) string { return "bpm-gateway-" + remote }
