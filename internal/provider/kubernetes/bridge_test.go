package kubernetes

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

// TestBridgeTokenOnlyInSidecarSecret: the relay token the manager passes
// ends up in exactly one request, the sidecar's Secret, applied after the
// instance's Secret and before the pod's workload; the instance's own
// Secret (which the service imports whole) and the pod spec never carry
// it. Without a token there is no sidecar, no volume, no bridge Secret.
func TestBridgeTokenOnlyInSidecarSecret(t *testing.T) {
	const token = "Zm9yLXRoZS1zaWRlY2FyLW9ubHktbm90LXRoZS1zZXJ2aWNl"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg := NewConfig()
	cfg.Kubeconfig = writeKubeconfig(t, srv.URL)
	p, err := New(ctx, "gke", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkg := &blueprint.Package{Manifest: blueprint.Manifest{Name: "bare",
		Sources: []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "bare:latest"}}}}
	deploy := func(env map[string]string) []string {
		t.Helper()
		api.reset()
		if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: "0a1b2c3d", Remote: "gke", BlueprintID: 1, ServiceID: 2,
			Package: pkg, Env: env}); err != nil {
			t.Fatal(err)
		}
		return strings.Split(api.log(false), "\n\n")
	}

	reqs := deploy(map[string]string{"A": "1", gateway.EnvRelayToken: token})
	enc := base64.StdEncoding.EncodeToString([]byte(token))
	idx := func(prefix string) int {
		for i, r := range reqs {
			if strings.HasPrefix(strings.TrimLeft(r, "\n"), prefix) {
				return i
			}
		}
		return -1
	}
	inst := idx("PATCH /api/v1/namespaces/bpm/secrets/bpm-0a1b2c3d?")
	side := idx("PATCH /api/v1/namespaces/bpm/secrets/bpm-0a1b2c3d-bridge?")
	work := idx("PATCH /apis/apps/v1/namespaces/bpm/deployments/bpm-0a1b2c3d?")
	if inst < 0 || side < inst || work < side {
		t.Fatalf("order: instance secret %d, sidecar secret %d, deployment %d; want increasing:\n%s", inst, side, work, strings.Join(reqs, "\n\n"))
	}
	for i, r := range reqs {
		if (strings.Contains(r, enc) || strings.Contains(r, token)) != (i == side) {
			t.Errorf("request %d holds the token: %v, want only in the sidecar's secret:\n%s", i, i != side, r)
		}
	}
	if !strings.Contains(reqs[work], `"initContainers"`) || !strings.Contains(reqs[work], `"bpm-bridge"`) {
		t.Errorf("deployment without the bridge sidecar:\n%s", reqs[work])
	}

	reqs = deploy(map[string]string{"A": "1"})
	if side := idx("PATCH /api/v1/namespaces/bpm/secrets/bpm-0a1b2c3d-bridge?"); side >= 0 {
		t.Error("a bridge secret without a token")
	}
	if work := idx("PATCH /apis/apps/v1/namespaces/bpm/deployments/bpm-0a1b2c3d?"); work < 0 ||
		strings.Contains(reqs[work], "initContainers") || strings.Contains(reqs[work], "bpm-bridge") {
		t.Errorf("deployment without a token has a sidecar or volume")
	}
}
