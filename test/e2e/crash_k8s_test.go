//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// k8sCrashPoints are the steps of `bpm deploy --remote <kubernetes>` at
// which the manager is killed. Before the provider ran, nothing may
// survive. After it returned but before the handle was recorded, the
// objects exist and the pod may or may not run yet when the next manager
// reconciles: it adopts a running one and removes one still starting (the
// client was told the deploy failed), so either outcome is right as long
// as nothing is left unaccounted for.
var k8sCrashPoints = []struct {
	point string
	want  []string // acceptable states after the restart
}{
	{"deploy/after-intent", []string{"failed"}},
	{"deploy/after-tunnel", []string{"failed"}},
	// The instance's Secrets applied, its workload not yet.
	{"kubernetes/after-secrets", []string{"failed"}},
	{"deploy/after-provider", []string{"running", "failed"}},
}

// TestIntegrationKubernetesCrash is issue #8's crash test: the manager is
// SIGKILLed mid-deploy, and after its restart every instance bpm lists
// either runs with its objects or is failed with none, and no object with
// bpm's instance label belongs to anything else; terminating what is left
// leaves no instance object (checked with the real kubectl).
func TestIntegrationKubernetesCrash(t *testing.T) {
	bin := buildCrashBinary(t)
	pkg := filepath.Join(repoRoot(t), "examples", "echo")
	for _, c := range k8sCrashPoints {
		t.Run(c.point, func(t *testing.T) {
			k := newK8sTarget(t)
			e := newEnv(t)
			e.bin = bin
			const remote = "e2e-k8s-crash"
			k.use(e, remote, freePort(t), freeUDPPort(t))
			e.crashDeploy(c.point, "--remote", remote, "--package", pkg)

			e.startManager() // answers only after its first reconcile
			list := e.list(true)
			if len(list) != 1 || !slices.Contains(c.want, list[0].State) {
				t.Fatalf("after restart bpm lists %+v, want the interrupted deploy in one of %v", list, c.want)
			}
			in := list[0]
			if in.State == "failed" && !strings.Contains(in.Message, "interrupted") {
				t.Errorf("failed instance's message %q does not say the deploy was interrupted", in.Message)
			}
			checkK8sAccounted(t, e, k)

			for _, in := range e.list(false) {
				e.mustRun("terminate", in.ID)
			}
			var left []string
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				if left = k.instanceObjects(t, ""); len(left) == 0 {
					break
				}
			}
			if len(left) > 0 {
				t.Errorf("after terminating everything, the namespace still holds %v", left)
			}
		})
	}
}

// checkK8sAccounted asserts the crash invariant on the cluster: a running
// instance has its Deployment, a failed one has no object left (deletion
// is asynchronous for pods, so it waits for them to go), and every object
// with bpm's instance label belongs to an instance bpm lists as live.
func checkK8sAccounted(t *testing.T, e *env, k *k8sTarget) {
	t.Helper()
	live := map[string]bool{}
	var list []instance
	must(t, json.Unmarshal([]byte(e.mustRun("list", "--all", "-o", "json")), &list))
	for _, in := range list {
		switch in.State {
		case "running":
			live[in.ID] = true
			if objs := strings.Join(k.instanceObjects(t, in.ID), " "); !strings.Contains(objs, "Deployment/") {
				t.Errorf("running instance %s has no Deployment: %s", in.ID, objs)
			}
		case "failed":
			var left []string
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				if left = k.instanceObjects(t, in.ID); len(left) == 0 {
					break
				}
			}
			if len(left) > 0 {
				t.Errorf("failed instance %s still has objects: %v", in.ID, left)
			}
		default:
			t.Errorf("instance %s is %s (%s): neither running nor failed", in.ID, in.State, in.Message)
		}
	}
	for _, o := range k.instanceObjects(t, "") {
		if _, id, _ := strings.Cut(o, "="); !live[id] {
			t.Errorf("%s is on the cluster but bpm lists no live instance %s", o, id)
		}
	}
}
