//go:build !bpm_noremote

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkIntegrationK8sReadyThroughProxy measures issue 8's second
// target: deploy → the first request answered through the auth proxy and
// the tunnel, on a cluster whose gateway is up, beside `kubectl apply` of
// the equivalent Deployment plus `kubectl rollout status`, in the same run;
// target ≤ 1.3× the baseline (scripts/bench --remote). "Equivalent" is
// bpm's own pod template (taken from the anchor instance, renamed, with
// bpm's labels off): the bridge sidecar and its startup probe cost the
// pod about a second of kubelet sequencing whoever applies it, so the
// comparison measures what bpm adds — its API calls, status polling, the
// route, the proxy and the tunnel.
func BenchmarkIntegrationK8sReadyThroughProxy(b *testing.B) {
	k := newK8sTarget(b)
	e := newEnv(b)
	pkg := filepath.Join(repoRoot(b), "examples", "echo")
	proxyPort := freePort(b)
	const remote = "bench-k8s"
	k.use(e, remote, proxyPort, freeUDPPort(b))
	p := newProxyBench(b, e, proxyPort, remote, pkg)
	b.Run("bpm", p.run)
	b.Run("kubectl-apply-rollout", func(b *testing.B) {
		kubectl := func(stdin string, args ...string) {
			cmd := exec.Command(k.env.Var("BPM_TEST_KUBECTL"), append([]string{"--kubeconfig", k.env.Kubernetes.Kubeconfig,
				"--context", k.env.Var("BPM_TEST_K8S_CONTEXT_A"), "-n", k.ns}, args...)...)
			cmd.Stdin = bytes.NewReader([]byte(stdin))
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("kubectl %v: %v\n%s", args, err, out)
			}
		}
		out, err := exec.Command(k.env.Var("BPM_TEST_KUBECTL"), "--kubeconfig", k.env.Kubernetes.Kubeconfig,
			"--context", k.env.Var("BPM_TEST_K8S_CONTEXT_A"), "-n", k.ns,
			"get", "deployments", "-l", "bpm.instance="+p.anchor.ID, "-o", "jsonpath={.items[0].spec.template.spec}").Output()
		if err != nil || len(out) == 0 {
			b.Fatalf("the anchor's pod template: %v", err)
		}
		var podSpec map[string]any
		if err := json.Unmarshal(out, &podSpec); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			name := fmt.Sprintf("bench-echo-%d", time.Now().UnixNano())
			labels := map[string]string{"app": name}
			manifest, _ := json.Marshal(map[string]any{
				"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": map[string]any{"name": name, "labels": labels},
				"spec": map[string]any{"replicas": 1, "selector": map[string]any{"matchLabels": labels},
					"template": map[string]any{"metadata": map[string]any{"labels": labels}, "spec": podSpec}},
			})
			kubectl(string(manifest), "apply", "--server-side", "-f", "-")
			kubectl("", "rollout", "status", "deployment/"+name, "--timeout=120s")
			b.StopTimer()
			kubectl(string(manifest), "delete", "--wait=true", "-f", "-")
			b.StartTimer()
		}
	})
}
