//go:build !bpm_noremote

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

func newK8sTarget(t *testing.T) *k8sTarget {
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
