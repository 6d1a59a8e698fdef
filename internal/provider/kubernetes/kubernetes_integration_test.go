package kubernetes_test

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/provider/providertest"
	"github.com/bpm-project/bpm/internal/testenv"
)

type kubeEnv struct {
	kubeconfig, kubectl, image string
	contexts                   [2]struct{ name, namespace string }
	env                        *testenv.Env
}

func requireKubernetes(t testing.TB) kubeEnv {
	t.Helper()
	env := testenv.Require(t, "kubernetes")
	v := func(name string) string {
		t.Helper()
		s := env.Var(name)
		if s == "" {
			t.Fatalf("%s is unset although BPM_TEST_KUBECONFIG is set", name)
		}
		return s
	}
	e := kubeEnv{kubeconfig: env.Kubernetes.Kubeconfig, kubectl: v("BPM_TEST_KUBECTL"), image: v("BPM_TEST_K8S_IMAGE"), env: env}
	e.contexts[0].name, e.contexts[0].namespace = v("BPM_TEST_K8S_CONTEXT_A"), v("BPM_TEST_K8S_NAMESPACE_A")
	e.contexts[1].name, e.contexts[1].namespace = v("BPM_TEST_K8S_CONTEXT_B"), v("BPM_TEST_K8S_NAMESPACE_B")
	return e
}

func (e kubeEnv) config(i int) *kubernetes.Config {
	c := kubernetes.NewConfig()
	c.Kubeconfig = e.kubeconfig
	c.Context = e.contexts[i].name
	c.Namespace = e.contexts[i].namespace
	return c
}

func newProvider(t testing.TB, remote string, cfg *kubernetes.Config) *kubernetes.Provider {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := kubernetes.New(ctx, remote, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// probePackage is the test image (an HTTP server on :8080 that logs
// "probe listening on") as a container blueprint.
func probePackage(image string) *blueprint.Package {
	return &blueprint.Package{Manifest: blueprint.Manifest{
		Name:      "bpm-k8s-probe",
		Version:   "0.0.1",
		Sources:   []blueprint.Source{{Kind: blueprint.SourceContainer, Image: image}},
		Resources: blueprint.Resources{CPU: "50m", Memory: "32Mi"},
		Ports:     []blueprint.Port{{Name: "http", Port: 8080, Protocol: "tcp"}},
		Env:       map[string]string{"MESSAGE": "hello"},
		Health:    &blueprint.Health{HTTP: "/healthz"},
	}}
}

// retryGet GETs the ClusterIP address until it answers: kube-proxy programs
// a new Service's rules asynchronously, shortly after the pod is Ready.
func retryGet(ctx context.Context, st provider.Status, path string) (int, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var lastErr error
	for i := 0; i < 60; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.Address+path, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return 0, lastErr
}

func TestIntegrationConformance(t *testing.T) {
	e := requireKubernetes(t)
	p := newProvider(t, "k8s-a", e.config(0))
	providertest.Run(t, providertest.Harness{
		Provider:  p,
		Remote:    "k8s-a",
		Package:   func(t *testing.T) *blueprint.Package { return probePackage(e.image) },
		LogMarker: "probe listening on",
		Get:       retryGet,
	})
}

func (e kubeEnv) kubectlOut(t *testing.T, kctx string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig, "--context", kctx}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestIntegrationTwoContexts uses both contexts (two users, two
// namespaces) as two remotes at once: each instance lands in its own
// remote's namespace, each remote lists only its own, and the env values
// are in a Secret, never in the Deployment.
func TestIntegrationTwoContexts(t *testing.T) {
	e := requireKubernetes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type remote struct {
		name string
		p    *kubernetes.Provider
		id   string
	}
	rs := []*remote{{name: "k8s-a"}, {name: "k8s-b"}}
	for i, r := range rs {
		r.p = newProvider(t, r.name, e.config(i))
		r.id = providertest.NewInstanceID()
		req := provider.DeployRequest{InstanceID: r.id, Remote: r.name, BlueprintID: 1, ServiceID: 2,
			Package: probePackage(e.image), Env: map[string]string{"MESSAGE": "secret-" + r.id}}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := r.p.Terminate(cctx, provider.Ref{InstanceID: r.id, Remote: r.name}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		if _, err := r.p.Deploy(ctx, req); err != nil {
			t.Fatalf("%s: Deploy: %v", r.name, err)
		}
	}
	for i, r := range rs {
		for {
			st, err := r.p.Status(ctx, provider.Ref{InstanceID: r.id, Remote: r.name})
			if err != nil {
				t.Fatalf("%s: Status: %v", r.name, err)
			}
			if st.State == provider.StateRunning {
				break
			}
			if st.State == provider.StateFailed || ctx.Err() != nil {
				t.Fatalf("%s: %s: %s", r.name, st.State, st.Message)
			}
			time.Sleep(200 * time.Millisecond)
		}
		c := e.contexts[i]
		name := "bpm-" + r.id
		if got := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "deployment", name, "-o", "jsonpath={.metadata.labels.bpm\\.remote}"); got != r.name {
			t.Errorf("%s: deployment in %s has bpm.remote=%q", r.name, c.namespace, got)
		}
		if dep := e.kubectlOut(t, c.name, "-n", c.namespace, "get", "deployment", name, "-o", "json"); strings.Contains(dep, "secret-"+r.id) {
			t.Errorf("%s: an env value is in the Deployment", r.name)
		}
		other := rs[1-i]
		owned, err := r.p.ListOwned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range owned {
			ids = append(ids, o.InstanceID)
		}
		if !strings.Contains(strings.Join(ids, ","), r.id) || strings.Contains(strings.Join(ids, ","), other.id) {
			t.Errorf("%s lists %v; want its own %s and not %s", r.name, ids, r.id, other.id)
		}
		if _, err := r.p.Status(ctx, provider.Ref{InstanceID: other.id, Remote: r.name}); !errors.Is(err, provider.ErrNotFound) {
			t.Errorf("%s sees the other remote's instance: %v", r.name, err)
		}
	}
}

// kubectlErr runs kubectl and returns its output and error, for checks that
// expect a failure.
func kubectlErr(e kubeEnv, kctx string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig, "--context", kctx}, args...)...).CombinedOutput()
	return string(out), err
}
