package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bpm-project/bpm/internal/provider"
)

// FieldManager owns every field bpm applies. Server-side apply with one
// manager makes a repeated deploy a no-op and lets an operator's own edits to
// other fields survive it.
const FieldManager = "bpm"

// Label keys. Everything bpm creates carries them, so a restarted manager
// (or `kubectl get -l`) finds its objects without bpm's database.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelInstance  = "bpm.instance"
	LabelRemote    = "bpm.remote"
	LabelBlueprint = "bpm.blueprint"
	LabelService   = "bpm.service"
	// LabelComponent marks the remote's gateway, which NetworkPolicies
	// admit; instances do not carry it.
	LabelComponent = "bpm.component"
	managedBy      = "bpm"
)

// Provider runs instances on one cluster, in one namespace.
type Provider struct {
	remote string
	cfg    *Config
	api    *client
	log    *slog.Logger
	// pollInterval paces the waits in Terminate and EstablishTunnel.
	pollInterval time.Duration

	// lifecycle orders the gateway's making and removal against the
	// instances that need it: EstablishTunnel, the start of Deploy (up to
	// its first object, which makes the instance count), and the removal
	// of the gateway with the remote's last instance in Terminate. Without
	// it a terminate could count no instance and delete the gateway that a
	// concurrent deploy has just established and is about to use.
	lifecycle sync.Mutex
	// tunnel is the spec of the last EstablishTunnel, so Deploy can bring
	// back a gateway that the last instance's terminate removed after it
	// was established. Guarded by lifecycle.
	tunnel *provider.TunnelSpec
	// relayAddr is the gateway relay Service's ClusterIP:port, which
	// bridge sidecars dial (bridge.go). Guarded by lifecycle.
	relayAddr string
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Logser   = (*Provider)(nil)
	_ provider.Lister   = (*Provider)(nil)
)

// New connects to the cluster that cfg's kubeconfig and context name, the
// way kubectl does: the same lookup order, and exec credential plugins (how
// EKS, GKE and AKS authenticate) run by client-go itself. It makes sure the
// namespace and its quota exist.
func New(ctx context.Context, remote string, cfg *Config, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.Kubeconfig != "" {
		rules.ExplicitPath = cfg.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Context})
	rc, err := cc.ClientConfig()
	if err != nil {
		// Unavailable, not invalid: the file or context may appear later
		// (a cloud CLI writes it) without a change to bpm's config.
		return nil, fmt.Errorf("kubernetes: kubeconfig: %w: %w", provider.ErrUnavailable, err)
	}
	rc.UserAgent = "bpm"
	// client-go's default limiter (5 requests/s) queues a deploy behind
	// the polls of a terminate; kubectl allows 50 with bursts of 300.
	rc.QPS, rc.Burst = 50, 100
	api, err := newClient(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client: %w", err)
	}
	p := &Provider{remote: remote, cfg: cfg, api: api, pollInterval: 250 * time.Millisecond,
		log: log.With("remote", remote, "namespace", cfg.Namespace)}
	if err := p.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	if err := p.applyQuota(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Type implements provider.Provider.
func (p *Provider) Type() string { return Type }

func (p *Provider) ns() string { return p.cfg.Namespace }

// ensureNamespace creates the namespace when it is missing. Users confined
// to one namespace (as most cluster tenants are) can neither read nor create
// namespaces; for them a Forbidden answer means "use it as it is".
func (p *Provider) ensureNamespace(ctx context.Context) error {
	err := p.api.namespaces().get(ctx, p.ns(), &corev1.Namespace{})
	switch {
	case err == nil, apierrors.IsForbidden(err):
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("kubernetes: namespace %s: %w: %w", p.ns(), provider.ErrUnavailable, err)
	}
	nsObj := newObject("v1", "Namespace", p.ns(), "", map[string]string{LabelManagedBy: managedBy})
	if err := p.api.namespaces().apply(ctx, nsObj); err != nil && !apierrors.IsAlreadyExists(err) {
		return wrapAPI("create namespace "+p.ns(), err)
	}
	return nil
}

// Room the gateway needs inside the quota, on top of max_instances instances.
var (
	gatewayCPU    = resource.MustParse("100m")
	gatewayMemory = resource.MustParse("64Mi")
)

// applyQuota turns [resources] into the namespace's ResourceQuota, so the
// cluster itself enforces what bpm promised even against a second manager
// or a hand-made Deployment. Without max_instances there is no total to
// enforce (per-instance limits go on each container).
func (p *Provider) applyQuota(ctx context.Context) error {
	r := p.cfg.Resources
	if r.MaxInstances <= 0 {
		// Declarative: no max_instances means no quota, so one left by an
		// earlier config goes. Only ours: the label says bpm made it.
		var q corev1.ResourceQuota
		err := p.api.resourceQuotas(p.ns()).get(ctx, "bpm", &q)
		if err != nil || q.Labels[LabelManagedBy] != managedBy {
			return nil // none, or not ours, or not ours to read
		}
		if err := p.api.resourceQuotas(p.ns()).delete(ctx, "bpm", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return wrapAPI("delete quota", err)
		}
		return nil
	}
	n := int64(r.MaxInstances)
	// Each instance pod also runs the bridge sidecar (bridge.go), whose
	// limits the quota counts too.
	hard := corev1.ResourceList{
		// One more than max_instances: the gateway is a Deployment too.
		"count/deployments.apps": *resource.NewQuantity(n+1, resource.DecimalSI),
	}
	if r.CPULimit != "" {
		q, err := resource.ParseQuantity(r.CPULimit)
		if err != nil {
			return fmt.Errorf("kubernetes: cpu_limit: %w", err)
		}
		total := resource.NewMilliQuantity((q.MilliValue()+sidecarCPULimit.MilliValue())*n+gatewayCPU.MilliValue(), resource.DecimalSI)
		hard[corev1.ResourceLimitsCPU] = *total
	}
	if r.MemoryLimit != "" {
		q, err := resource.ParseQuantity(r.MemoryLimit)
		if err != nil {
			return fmt.Errorf("kubernetes: memory_limit: %w", err)
		}
		hard[corev1.ResourceLimitsMemory] = *resource.NewQuantity((q.Value()+sidecarMemLimit.Value())*n+gatewayMemory.Value(), resource.BinarySI)
	}
	quota := newObject("v1", "ResourceQuota", "bpm", p.ns(), map[string]string{LabelManagedBy: managedBy, LabelRemote: p.remote})
	quota.Spec = resourceQuotaSpec{Hard: hard}
	if err := p.api.resourceQuotas(p.ns()).apply(ctx, quota); err != nil {
		return fmt.Errorf("kubernetes: apply quota: %w", err)
	}
	return nil
}

// handle is what the manager persists for an instance. Names are derived
// from the instance id anyway; the handle records the namespace so that a
// remote whose namespace changes in config still finds its old instances.
type handle struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (p *Provider) handleFor(id string) provider.Handle {
	b, _ := json.Marshal(handle{Namespace: p.ns(), Name: objectName(id)})
	return b
}

// locate returns the namespace and object name of ref.
func (p *Provider) locate(ref provider.Ref) (ns, name string) {
	var h handle
	if len(ref.Handle) > 0 && json.Unmarshal(ref.Handle, &h) == nil && h.Namespace != "" && h.Name != "" {
		return h.Namespace, h.Name
	}
	return p.ns(), objectName(ref.InstanceID)
}

// objectName is every per-instance object's name: deterministic, so a
// retried deploy applies onto what an interrupted one created.
func objectName(id string) string { return "bpm-" + id }

func (p *Provider) instanceSelector(id string) string {
	return LabelManagedBy + "=" + managedBy + "," + LabelInstance + "=" + id
}

// Resources reports the room left: instances under max_instances, and CPU
// and memory under the quota, or the nodes' allocatable total without one.
func (p *Provider) Resources(ctx context.Context) (provider.Resources, error) {
	out := provider.Resources{Instances: -1}
	if limit := p.cfg.Resources.MaxInstances; limit > 0 {
		owned, err := p.ListOwned(ctx)
		if err != nil {
			return out, err
		}
		out.Instances = max(0, limit-len(owned))
	}
	var q corev1.ResourceQuota
	if err := p.api.resourceQuotas(p.ns()).get(ctx, "bpm", &q); err == nil {
		if h, ok := q.Status.Hard[corev1.ResourceLimitsCPU]; ok {
			u := q.Status.Used[corev1.ResourceLimitsCPU]
			out.CPUMillis = max(0, h.MilliValue()-u.MilliValue())
		}
		if h, ok := q.Status.Hard[corev1.ResourceLimitsMemory]; ok {
			u := q.Status.Used[corev1.ResourceLimitsMemory]
			out.MemoryBytes = max(0, h.Value()-u.Value())
		}
	}
	if out.CPUMillis == 0 && out.MemoryBytes == 0 {
		var nodes corev1.NodeList
		if err := p.api.nodes().list(ctx, metav1.ListOptions{}, &nodes); err == nil {
			for _, n := range nodes.Items {
				cpu, mem := n.Status.Allocatable[corev1.ResourceCPU], n.Status.Allocatable[corev1.ResourceMemory]
				gpu := n.Status.Allocatable[gpuResource]
				out.CPUMillis += cpu.MilliValue()
				out.MemoryBytes += mem.Value()
				out.GPUs += int(gpu.Value())
			}
		} else if !apierrors.IsForbidden(err) {
			return out, fmt.Errorf("kubernetes: resources: %w", err)
		}
	}
	return out, nil
}

// EstimateCost: the cluster's price is the operator's [pricing], which the
// cost package applies; the provider itself adds nothing.
func (p *Provider) EstimateCost(ctx context.Context, req provider.CostRequest) (provider.CostEstimate, error) {
	return provider.CostEstimate{HourlyUSD: 0, Detail: "kubernetes: priced by the remote's [pricing]"}, nil
}

// wrapAPI names the step and maps API answers to provider's sentinels: a
// quota refusal is ErrQuota (the API server answers Forbidden for it, which
// would otherwise read as a permission problem).
func wrapAPI(step string, err error) error {
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return fmt.Errorf("kubernetes: %s: %w: %w", step, provider.ErrQuota, err)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err):
		return fmt.Errorf("kubernetes: %s: %w: %w", step, provider.ErrUnavailable, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("kubernetes: %s: %w: %w", step, provider.ErrNotFound, err)
	}
	return fmt.Errorf("kubernetes: %s: %w", step, err)
}

// specDigest fingerprints secret data for a pod template annotation, so a
// changed Secret rolls the pod. Keyed by nothing secret but one-way, and the
// inputs (keys, addresses) are high-entropy, so it reveals nothing usable.
func specDigest(data map[string][]byte) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%s=%d:%s\n", k, len(data[k]), data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// gatewayName names a remote's gateway Deployment and Secret. Per remote,
// not per namespace: two remotes may share a namespace (say, one with a GPU
// node selector), and each has its own tunnel key. Remote names may hold
// "_" and end in "-", which object names may not; such names get a digest
// suffix so that "a_b" and "a-b" stay apart.
func gatewayName(remote string) string {
	name := strings.ReplaceAll(remote, "_", "-")
	if name != remote || strings.HasSuffix(name, "-") {
		sum := sha256.Sum256([]byte(remote))
		name = strings.TrimRight(name, "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return "bpm-gateway-" + name
}
