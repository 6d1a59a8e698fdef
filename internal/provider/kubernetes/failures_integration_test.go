package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/provider/providertest"
)

// deployT deploys pkg as a fresh instance and terminates it at cleanup.
func deployT(t *testing.T, ctx context.Context, p *kubernetes.Provider, remote string, pkg *blueprint.Package) (provider.Ref, error) {
	t.Helper()
	ref := provider.Ref{InstanceID: providertest.NewInstanceID(), Remote: remote}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := p.Terminate(cctx, ref); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	h, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: ref.InstanceID, Remote: remote, Package: pkg})
	ref.Handle = h
	return ref, err
}

// waitMessage polls Status until its message contains want, failing if
// the instance is ever reported running.
func waitMessage(t *testing.T, ctx context.Context, p *kubernetes.Provider, ref provider.Ref, state provider.State, want string) {
	t.Helper()
	var st provider.Status
	var err error
	for {
		st, err = p.Status(ctx, ref)
		if err == nil && st.State == state && strings.Contains(st.Message, want) {
			return
		}
		if err == nil && st.State == provider.StateRunning {
			t.Fatalf("reported running: %+v", st)
		}
		if ctx.Err() != nil {
			t.Fatalf("never %s with %q; last %+v %v", state, want, st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIntegrationFailuresAreReported: a pod no node can fit is reported
// as unschedulable (not running), and an image no registry has as a
// failure naming the image.
func TestIntegrationFailuresAreReported(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := newProvider(t, "k8s-fail", e.config(0))

	huge := probePackage(e.image)
	huge.Manifest.Resources.CPU = "500"
	ref, err := deployT(t, ctx, p, "k8s-fail", huge)
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, ctx, p, ref, provider.StateCreating, "unschedulable: ")

	missing := probePackage("localhost/bpm-test/does-not-exist:v0")
	ref, err = deployT(t, ctx, p, "k8s-fail", missing)
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, ctx, p, ref, provider.StateFailed, "localhost/bpm-test/does-not-exist:v0 cannot be pulled")
}

// TestIntegrationQuota: with max_instances = 1 the remote gets a
// ResourceQuota, the second instance is refused with ErrQuota before any
// object is made, and a provider built without max_instances removes the
// quota again.
func TestIntegrationQuota(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.contexts[1]
	cfg := e.config(1)
	cfg.Resources.MaxInstances = 1
	cfg.Resources.CPULimit = "100m"
	cfg.Resources.MemoryLimit = "64Mi"
	p := newProvider(t, "k8s-quota", cfg)
	t.Cleanup(func() { newProvider(t, "k8s-quota", e.config(1)) })
	if hard := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "resourcequota", "bpm", "-o", "jsonpath={.spec.hard}"); !strings.Contains(hard, `"count/deployments.apps":"2"`) || !strings.Contains(hard, `"limits.cpu":"300m"`) {
		// 100m for the instance, 100m for its bridge sidecar, 100m for the gateway.
		t.Errorf("quota hard = %s", hard)
	}
	first, err := deployT(t, ctx, p, "k8s-quota", probePackage(e.image))
	if err != nil {
		t.Fatal(err)
	}
	second, err := deployT(t, ctx, p, "k8s-quota", probePackage(e.image))
	if !errors.Is(err, provider.ErrQuota) || !strings.Contains(err.Error(), "max_instances = 1") {
		t.Fatalf("second deploy: err = %v, want ErrQuota naming max_instances", err)
	}
	if _, err := p.Status(ctx, second); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("the refused instance left a Deployment: %v", err)
	}
	// The first one is unaffected, and re-deploying it is not "another".
	if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: first.InstanceID, Remote: "k8s-quota", Package: probePackage(e.image)}); err != nil {
		t.Fatalf("re-deploy of the admitted instance: %v", err)
	}
	if r, err := p.Resources(ctx); err != nil || r.Instances != 0 {
		t.Errorf("Resources = %+v, %v; want 0 instances left", r, err)
	}
	// A manifest asking for more than the per-instance limit is refused
	// before anything is created.
	big := probePackage(e.image)
	big.Manifest.Resources.CPU = "1"
	p2 := newProvider(t, "k8s-quota", func() *kubernetes.Config { c := e.config(1); c.Resources.CPULimit = "100m"; return c }())
	if _, err := deployT(t, ctx, p2, "k8s-quota", big); !errors.Is(err, provider.ErrQuota) {
		t.Errorf("deploy over cpu_limit: err = %v, want ErrQuota", err)
	}
	if out, _ := kubectlErr(e, c.name, "-n", c.namespace, "get", "resourcequota", "bpm"); !strings.Contains(out, "NotFound") {
		t.Errorf("quota still there after a provider without max_instances: %s", out)
	}
}

// TestIntegrationInterruptedDeploy: what a deploy killed after its Secret
// left is listed and reported (not hidden as "not found"), and Terminate
// removes every object of the instance, checked with kubectl.
func TestIntegrationInterruptedDeploy(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.contexts[0]
	p := newProvider(t, "k8s-crash", e.config(0))
	ref, err := deployT(t, ctx, p, "k8s-crash", probePackage(e.image))
	if err != nil {
		t.Fatal(err)
	}
	sel := "bpm.instance=" + ref.InstanceID
	kinds := "deployment,replicaset,pod,service,secret,networkpolicy"
	if out := e.kubectlOut(t, c.name, "-n", c.namespace, "get", kinds, "-l", sel, "-o", "name"); strings.Count(out, "\n") < 5 {
		t.Fatalf("objects after deploy:\n%s", out)
	}
	// Leave what a manager killed right after applying the Secret leaves.
	e.kubectlOut(t, c.name, "-n", c.namespace, "delete", "deployment,service,networkpolicy", "-l", sel, "--wait=true")
	owned, err := p.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, o := range owned {
		listed = listed || o.InstanceID == ref.InstanceID
	}
	if !listed {
		t.Fatalf("a half-deployed instance is not listed: %+v", owned)
	}
	if st, err := p.Status(ctx, ref); err != nil || st.State != provider.StateFailed || !strings.Contains(st.Message, "interrupted") {
		t.Fatalf("Status of a half-deployed instance = %+v, %v", st, err)
	}
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if out := e.kubectlOut(t, c.name, "-n", c.namespace, "get", kinds, "-l", sel, "-o", "name"); out != "" {
		t.Fatalf("left after Terminate:\n%s", out)
	}
}

// TestIntegrationStorage: a manifest asking for storage becomes a
// StatefulSet with a labelled claim; on this cluster (no volume
// provisioner) its pod cannot be placed, which Status says instead of
// running; Terminate removes the claim with everything else.
func TestIntegrationStorage(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.contexts[0]
	p := newProvider(t, "k8s-storage", e.config(0))
	pkg := probePackage(e.image)
	pkg.Manifest.Resources.Storage = "16Mi"
	ref, err := deployT(t, ctx, p, "k8s-storage", pkg)
	if err != nil {
		t.Fatal(err)
	}
	sel := "bpm.instance=" + ref.InstanceID
	if out := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "statefulset,persistentvolumeclaim", "-l", sel, "-o", "name"); !strings.Contains(out, "statefulset.apps/bpm-"+ref.InstanceID) || !strings.Contains(out, "persistentvolumeclaim/data-bpm-"+ref.InstanceID+"-0") {
		t.Fatalf("objects of a storage instance:\n%s", out)
	}
	if out := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "statefulset", "bpm-"+ref.InstanceID, "-o",
		`jsonpath={.spec.template.spec.containers[0].volumeMounts[0].mountPath} {.spec.template.spec.containers[0].env[?(@.name=="DATA_DIR")].value}`); out != "/data /data" {
		t.Fatalf("the claim is not mounted at DATA_DIR: mount path and DATA_DIR are %q", out)
	}
	var st provider.Status
	for {
		if st, err = p.Status(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if st.State == provider.StateRunning {
			break // a cluster with a provisioner
		}
		if strings.Contains(st.Message, "unschedulable") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status never explained the pending pod: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("status: %s: %s", st.State, st.Message)
	owned, err := p.ListOwned(ctx)
	if err != nil || len(owned) == 0 {
		t.Fatalf("ListOwned = %+v, %v", owned, err)
	}
	if err := p.Terminate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if out := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "statefulset,pod,persistentvolumeclaim,secret,service", "-l", sel, "-o", "name"); out != "" {
		t.Fatalf("left after Terminate:\n%s", out)
	}
}

// TestIntegrationGPU: a manifest asking for a GPU gets an nvidia.com/gpu
// limit and the GPU taint's toleration; on this GPU-less cluster the pod
// is reported unschedulable, never running.
func TestIntegrationGPU(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := e.contexts[0]
	p := newProvider(t, "k8s-gpu", e.config(0))
	pkg := probePackage(e.image)
	pkg.Manifest.Resources.GPU = 1
	ref, err := deployT(t, ctx, p, "k8s-gpu", pkg)
	if err != nil {
		t.Fatal(err)
	}
	spec := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "deployment", "bpm-"+ref.InstanceID, "-o", "jsonpath={.spec.template.spec}")
	if !strings.Contains(spec, `"nvidia.com/gpu":"1"`) || !strings.Contains(spec, `"key":"nvidia.com/gpu"`) {
		t.Errorf("pod spec lacks the GPU limit or toleration: %s", spec)
	}
	waitMessage(t, ctx, p, ref, provider.StateCreating, "nvidia.com/gpu")
}

// TestIntegrationIsolationWithoutRuntimeClass: a manifest asking for
// isolation = "vm" gets the remote's RuntimeClass on its pod template. The
// test cluster has no "kata" RuntimeClass, so the API server refuses the
// pod, and Status says so as a failure naming the class, never running.
func TestIntegrationIsolationWithoutRuntimeClass(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const remote = "k8s-iso"
	p := newProvider(t, remote, e.config(0))

	pkg := probePackage(e.image)
	pkg.Manifest.Isolation = blueprint.IsolationVM
	ref, err := deployT(t, ctx, p, remote, pkg)
	if err != nil {
		t.Fatal(err)
	}
	c := e.contexts[0]
	if got := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "deployment", "bpm-"+ref.InstanceID,
		"-o", "jsonpath={.spec.template.spec.runtimeClassName}"); got != kubernetes.DefaultRuntimeClass {
		t.Errorf("pod template runtimeClassName = %q, want %q", got, kubernetes.DefaultRuntimeClass)
	}
	waitMessage(t, ctx, p, ref, provider.StateFailed, `runtime class "kata" does not exist on the cluster`)

	// Without isolation the same package gets no RuntimeClass at all (the
	// cluster's default runtime).
	plain, err := deployT(t, ctx, p, remote, probePackage(e.image))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "deployment", "bpm-"+plain.InstanceID,
		"-o", "jsonpath={.spec.template.spec.runtimeClassName}"); got != "" {
		t.Errorf("runtimeClassName without isolation = %q, want none", got)
	}
}
