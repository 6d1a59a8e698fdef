package kubernetes

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

var update = flag.Bool("update", false, "rewrite the golden request logs in testdata/requests")

// TestRequests pins the exact HTTP requests each operation sends (method,
// path, query, headers, body) against golden files, recorded from a fake
// API server. The bodies are what the cluster ends up holding, and the
// field manager owns exactly their fields, so a change here is a change to
// every object bpm creates and must be deliberate.
func TestRequests(t *testing.T) {
	pkg := &blueprint.Package{Manifest: blueprint.Manifest{
		Name: "probe",
		Sources: []blueprint.Source{
			{Kind: blueprint.SourceNative},
			{Kind: blueprint.SourceContainer, Image: "registry.example/probe:1.2", Args: []string{"serve", "--fast"}},
		},
		Resources: blueprint.Resources{CPU: "250m", Memory: "64Mi", GPU: 1},
		Ports: []blueprint.Port{
			{Name: "http", Port: 8080},
			{Port: 9000, Protocol: "udp"},
			{Name: "way-too-long-port-name", Port: 9100, Protocol: "tcp"},
		},
		Health: &blueprint.Health{HTTP: "healthz", Timeout: blueprint.Duration{Duration: 2500 * time.Millisecond}},
	}}
	bare := &blueprint.Package{Manifest: blueprint.Manifest{
		Name:    "bare",
		Sources: []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "bare:latest"}},
	}}
	withStorage := &blueprint.Package{Manifest: blueprint.Manifest{
		Name:      "stateful",
		Sources:   []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "db:9"}},
		Resources: blueprint.Resources{Memory: "128Mi", Storage: "1Gi"},
		Ports:     []blueprint.Port{{Name: "db", Port: 5432}},
	}}
	// isolation = "vm": the pods get the remote's RuntimeClass.
	isolated := &blueprint.Package{Manifest: blueprint.Manifest{
		Name:      "isolated",
		Isolation: blueprint.IsolationVM,
		Sources:   []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "iso:1"}},
		Ports:     []blueprint.Port{{Name: "http", Port: 8080}},
	}}
	isolatedStorage := &blueprint.Package{Manifest: withStorage.Manifest}
	isolatedStorage.Manifest.Isolation = blueprint.IsolationVM
	ref := provider.Ref{InstanceID: "0a1b2c3d", Remote: "gke"}
	full := func() *Config {
		c := NewConfig()
		c.Namespace = "tenant"
		c.ImagePullSecrets = []string{"regcred"}
		c.NodeSelector = map[string]string{"pool": "gpu"}
		c.Resources.CPULimit = "500m"
		c.Resources.MemoryLimit = "256Mi"
		return c
	}
	deploy := func(pkg *blueprint.Package) func(context.Context, *Provider) error {
		return func(ctx context.Context, p *Provider) error {
			_, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: ref.InstanceID, Remote: ref.Remote,
				BlueprintID: 7, ServiceID: 42, Package: pkg, Env: map[string]string{"A": "1", "SERVICE_ID": "42"}})
			return err
		}
	}
	// A deploy from the manager, which gives a relaying provider the
	// instance's bridge relay token: the sidecar, its Secret, the volume.
	deployBridge := func(ctx context.Context, p *Provider) error {
		_, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: ref.InstanceID, Remote: ref.Remote,
			BlueprintID: 7, ServiceID: 42, Package: withStorage, Env: map[string]string{"A": "1", "SERVICE_ID": "42",
				"BRIDGE_SOCKET_PATH": p.BridgeSocketPath(7, 42), gateway.EnvRelayToken: "relay-token-must-stay-in-its-secret"}})
		return err
	}
	for _, tc := range []struct {
		name string
		cfg  func() *Config
		run  func(context.Context, *Provider) error // nil: record New itself
		// sorted: the operation sends requests concurrently.
		sorted bool
	}{
		{name: "new", cfg: NewConfig},
		{name: "new-quota", cfg: func() *Config { c := full(); c.Resources.MaxInstances = 3; return c }},
		{name: "deploy", cfg: full, run: deploy(pkg), sorted: true},
		{name: "deploy-bare", cfg: NewConfig, run: deploy(bare), sorted: true},
		{name: "deploy-storage", cfg: func() *Config { c := NewConfig(); c.Resources.MaxInstances = 2; return c }, run: deploy(withStorage), sorted: true},
		{name: "deploy-isolated", cfg: NewConfig, run: deploy(isolated), sorted: true},
		{name: "deploy-bridge", cfg: func() *Config { c := NewConfig(); c.GatewayImage = "gw:dev"; return c }, run: deployBridge, sorted: true},
		{name: "deploy-isolated-storage", cfg: func() *Config { c := NewConfig(); c.RuntimeClass = "kata-fc"; return c }, run: deploy(isolatedStorage), sorted: true},
		{name: "tunnel", cfg: func() *Config {
			c := full()
			c.GatewayImage, c.GatewayPullPolicy = "gw:dev", "Never"
			return c
		}, run: func(ctx context.Context, p *Provider) error {
			_, err := p.EstablishTunnel(ctx, provider.TunnelSpec{Remote: "gke", HubEndpoint: "203.0.113.1:51820",
				HubPublicKey: "hubkey=", HubAddress: "10.77.0.1", GatewayAddress: "10.77.0.3/16",
				GatewayPrivateKey: "gwkey=", MTU: 1380, Keepalive: 25 * time.Second})
			return err
		}},
		{name: "status", cfg: NewConfig, run: func(ctx context.Context, p *Provider) error {
			_, err := p.Status(ctx, ref)
			return err
		}},
		{name: "logs", cfg: NewConfig, run: func(ctx context.Context, p *Provider) error {
			return p.Logs(ctx, ref, provider.LogOptions{Tail: 10}, io.Discard)
		}},
		{name: "terminate", cfg: NewConfig, run: func(ctx context.Context, p *Provider) error {
			return p.Terminate(ctx, ref)
		}},
		{name: "list-owned", cfg: NewConfig, run: func(ctx context.Context, p *Provider) error {
			_, err := p.ListOwned(ctx)
			return err
		}},
		{name: "resources", cfg: NewConfig, run: func(ctx context.Context, p *Provider) error {
			_, err := p.Resources(ctx)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			api := &fakeAPI{}
			srv := httptest.NewServer(api)
			defer srv.Close()
			cfg := tc.cfg()
			cfg.Kubeconfig = writeKubeconfig(t, srv.URL)
			p, err := New(ctx, "gke", cfg, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if tc.run != nil {
				api.reset()
				if err := tc.run(ctx, p); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
			}
			got := api.log(tc.sorted)
			golden := filepath.Join("testdata", "requests", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to record)", err)
			}
			if got != string(want) {
				t.Errorf("requests differ from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {token: secret}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
`, server)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeAPI answers just enough of the Kubernetes API for each operation to
// run to its end, and records every request.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []string
	// gatewayGone: the gateway was deleted (by label) and not applied
	// since.
	gatewayGone bool
	// another: ListOwned finds a second instance of the remote.
	another bool
}

func (f *fakeAPI) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

func (f *fakeAPI) log(sorted bool) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	reqs := slices.Clone(f.reqs)
	if sorted {
		slices.Sort(reqs)
	}
	return strings.Join(reqs, "\n")
}

// listKinds maps a resource to its list's apiVersion and kind.
var listKinds = map[string][2]string{
	"deployments":            {"apps/v1", "DeploymentList"},
	"statefulsets":           {"apps/v1", "StatefulSetList"},
	"replicasets":            {"apps/v1", "ReplicaSetList"},
	"pods":                   {"v1", "PodList"},
	"secrets":                {"v1", "SecretList"},
	"services":               {"v1", "ServiceList"},
	"persistentvolumeclaims": {"v1", "PersistentVolumeClaimList"},
	"events":                 {"v1", "EventList"},
	"nodes":                  {"v1", "NodeList"},
	"resourcequotas":         {"v1", "ResourceQuotaList"},
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	entry := r.Method + " " + r.URL.Path
	if q := r.URL.Query().Encode(); q != "" {
		entry += "?" + q
	}
	entry += "\nAccept: " + r.Header.Get("Accept") + "\nUser-Agent: " + r.Header.Get("User-Agent")
	if ct := r.Header.Get("Content-Type"); ct != "" {
		entry += "\nContent-Type: " + ct
	}
	if len(body) > 0 {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			entry += "\n" + strconv.Quote(string(body)) // protobuf
		} else {
			b, _ := json.MarshalIndent(v, "", "  ")
			entry += "\n" + string(b)
		}
	}
	sel := r.URL.Query().Get("labelSelector")
	f.mu.Lock()
	f.reqs = append(f.reqs, entry+"\n")
	switch {
	case r.Method == http.MethodDelete && strings.Contains(sel, "bpm.component=gateway"):
		f.gatewayGone = true
	case r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/deployments/bpm-gateway-"):
		f.gatewayGone = false
	}
	gatewayGone, another := f.gatewayGone, f.another
	f.mu.Unlock()

	// /api/v1/... or /apis/GROUP/VERSION/...; then namespaces/NS/RESOURCE[/NAME[/SUB]]
	// or RESOURCE[/NAME].
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if parts[0] == "api" {
		parts = parts[2:]
	} else {
		parts = parts[3:]
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	resource, name, sub := parts[0], "", ""
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		sub = parts[2]
	}
	w.Header().Set("Content-Type", "application/json")
	reply := func(s string) { _, _ = io.WriteString(w, s) }
	switch {
	case r.Method == http.MethodPatch && resource == "services":
		// The API server assigns the cluster IP.
		var obj map[string]any
		_ = json.Unmarshal(body, &obj)
		if spec, ok := obj["spec"].(map[string]any); ok {
			spec["clusterIP"] = "10.0.0.10"
		}
		b, _ := json.Marshal(obj)
		_, _ = w.Write(b)
	case r.Method == http.MethodPatch:
		_, _ = w.Write(body)
	case r.Method == http.MethodDelete:
		reply(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}`)
	case sub == "log":
		w.Header().Set("Content-Type", "text/plain")
		reply("one\ntwo\n")
	case name == "" && resource == "pods":
		lk := listKinds[resource]
		if strings.Contains(sel, "bpm.component=gateway") && !gatewayGone || !strings.Contains(sel, "bpm.component=gateway") && f.podsWanted() {
			reply(`{"kind":"` + lk[1] + `","apiVersion":"` + lk[0] + `","metadata":{},"items":[` + runningPod + `]}`)
			return
		}
		reply(`{"kind":"` + lk[1] + `","apiVersion":"` + lk[0] + `","metadata":{},"items":[]}`)
	case name == "" && resource == "deployments" && another && strings.HasSuffix(sel, ",bpm.instance"):
		reply(`{"kind":"DeploymentList","apiVersion":"apps/v1","metadata":{},"items":[{"metadata":{"name":"bpm-other",
			"labels":{"bpm.instance":"other"}}}]}`)
	case name == "":
		lk := listKinds[resource]
		reply(`{"kind":"` + lk[1] + `","apiVersion":"` + lk[0] + `","metadata":{},"items":[]}`)
	case resource == "namespaces":
		reply(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"` + name + `"}}`)
	case resource == "deployments" && strings.HasPrefix(name, "bpm-gateway-") && gatewayGone:
		w.WriteHeader(http.StatusNotFound)
		reply(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404,
			"message":"deployments.apps \"` + name + `\" not found","details":{"name":"` + name + `","kind":"deployments"}}`)
	case resource == "deployments":
		reply(`{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"` + name + `","generation":1,"creationTimestamp":"2025-01-01T00:00:00Z"},
			"status":{"observedGeneration":1,"updatedReplicas":1,"availableReplicas":1,"readyReplicas":1}}`)
	case resource == "services":
		reply(`{"kind":"Service","apiVersion":"v1","metadata":{"name":"` + name + `"},"spec":{"clusterIP":"10.0.0.9","ports":[{"port":8080}]}}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		reply(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404,
			"message":"` + resource + ` \"` + name + `\" not found","details":{"name":"` + name + `","kind":"` + resource + `"}}`)
	}
}

// podsWanted: after the first DELETE (a terminate) the instance's pods are
// gone; before it, one runs.
func (f *fakeAPI) podsWanted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !slices.ContainsFunc(f.reqs, func(s string) bool { return strings.HasPrefix(s, "DELETE ") })
}

const runningPod = `{"metadata":{"name":"bpm-0a1b2c3d-xyz","creationTimestamp":"2025-01-01T00:00:00Z"},
	"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2025-01-01T00:00:05Z"}]}}`

// TestGatewayFollowsInstances: the remote's gateway goes with its last
// instance, stays while another instance is left, and a deploy whose
// gateway a terminate removed after EstablishTunnel (a terminate racing
// the deploy) applies it again before making its instance.
func TestGatewayFollowsInstances(t *testing.T) {
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
	if _, err := p.EstablishTunnel(ctx, provider.TunnelSpec{Remote: "gke", HubEndpoint: "203.0.113.1:51820",
		HubPublicKey: "hubkey=", HubAddress: "10.77.0.1", GatewayAddress: "10.77.0.3/16", GatewayPrivateKey: "gwkey="}); err != nil {
		t.Fatal(err)
	}
	const (
		deleteGateway = "DELETE /apis/apps/v1/namespaces/bpm/deployments?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbpm%2Cbpm.component%3Dgateway%2Cbpm.remote%3Dgke"
		applyGateway  = "PATCH /apis/apps/v1/namespaces/bpm/deployments/bpm-gateway-gke?"
		applySecret   = "PATCH /api/v1/namespaces/bpm/secrets/bpm-gateway-gke?"
		applyInstance = "PATCH /api/v1/namespaces/bpm/secrets/bpm-0a1b2c3d?"
	)
	ref := provider.Ref{InstanceID: "0a1b2c3d", Remote: "gke"}
	pkg := &blueprint.Package{Manifest: blueprint.Manifest{Name: "bare",
		Sources: []blueprint.Source{{Kind: blueprint.SourceContainer, Image: "bare:latest"}}}}
	deploy := func() string {
		t.Helper()
		api.reset()
		if _, err := p.Deploy(ctx, provider.DeployRequest{InstanceID: ref.InstanceID, Remote: "gke", Package: pkg}); err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		return api.log(false)
	}
	terminate := func() string {
		t.Helper()
		api.reset()
		if err := p.Terminate(ctx, ref); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		return api.log(false)
	}

	api.mu.Lock()
	api.another = true
	api.mu.Unlock()
	if log := terminate(); strings.Contains(log, deleteGateway) {
		t.Error("the gateway was removed while another instance is left")
	}
	api.mu.Lock()
	api.another = false
	api.mu.Unlock()
	if log := terminate(); !strings.Contains(log, deleteGateway) {
		t.Errorf("the last instance's terminate left the gateway:\n%s", log)
	}
	log := deploy()
	i, j := strings.Index(log, applyInstance), strings.Index(log, applyGateway)
	if i < 0 || j < i || !strings.Contains(log, applySecret) {
		t.Errorf("deploy after the gateway's removal: want the instance's Secret, then the gateway's Secret and Deployment applied:\n%s", log)
	}
	if log := deploy(); strings.Contains(log, applyGateway) {
		t.Error("a deploy applied a gateway that was there")
	}
}
