package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/crashpoint"
	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

// gpuResource is the extended resource the NVIDIA device plugin exposes,
// which is what GKE, EKS and AKS GPU nodes advertise.
const gpuResource corev1.ResourceName = "nvidia.com/gpu"

// DataDir is where an instance with storage finds its volume (DATA_DIR).
const DataDir = "/data"

func (p *Provider) labels(req provider.DeployRequest) map[string]string {
	return map[string]string{
		LabelManagedBy: managedBy,
		LabelInstance:  req.InstanceID,
		LabelRemote:    p.remote,
		LabelBlueprint: strconv.FormatUint(req.BlueprintID, 10),
		LabelService:   strconv.FormatUint(req.ServiceID, 10),
	}
}

func containerImage(pkg *blueprint.Package) (image string, args []string, err error) {
	for _, s := range pkg.Manifest.Sources {
		if s.Kind == blueprint.SourceContainer && s.Image != "" {
			return s.Image, s.Args, nil
		}
	}
	return "", nil, fmt.Errorf("kubernetes: %s has no container source: %w", pkg.Manifest.Name, provider.ErrUnsupported)
}

// Accepts refuses a package with no container source, or whose image
// reference the API server would refuse, before anything is recorded.
func (p *Provider) Accepts(pkg *blueprint.Package) error {
	image, _, err := containerImage(pkg)
	if err != nil {
		return err
	}
	if err := CheckImageRef(image); err != nil {
		return fmt.Errorf("kubernetes: image %q: %w", image, err)
	}
	return nil
}

// Deploy applies the instance's Secret, Deployment, Service and
// NetworkPolicy. Every object is applied whole with bpm's field manager, so
// deploying the same instance again changes nothing, and a deploy cut short
// is finished by the next one.
func (p *Provider) Deploy(ctx context.Context, req provider.DeployRequest) (provider.Handle, error) {
	image, args, err := containerImage(req.Package)
	if err != nil {
		return nil, err
	}
	if err := CheckImageRef(image); err != nil {
		return nil, fmt.Errorf("kubernetes: image %q: %w", image, err)
	}
	res, err := p.containerResources(req.Package.Manifest.Resources)
	if err != nil {
		return nil, err
	}
	if err := p.checkRoom(ctx, req.InstanceID); err != nil {
		return nil, err
	}
	name, ns, labels := objectName(req.InstanceID), p.ns(), p.labels(req)

	// The bridge relay token (bridge.go) goes to the sidecar's own Secret,
	// never into the instance's env.
	token := req.Env[gateway.EnvRelayToken]
	var relay string
	if token != "" {
		if relay, err = p.gatewayRelayAddr(ctx); err != nil {
			return nil, err
		}
	}

	// The env lives only in the Secret: a Deployment's env is readable by
	// anyone who may read Deployments, and shows in `kubectl describe`.
	data := make(map[string][]byte, len(req.Env))
	for k, v := range req.Env {
		if k != gateway.EnvRelayToken {
			data[k] = []byte(v)
		}
	}
	sec := newObject("v1", "Secret", name, ns, labels)
	sec.Type, sec.Data = corev1.SecretTypeOpaque, data
	if err := p.applyFirst(ctx, sec); err != nil {
		return nil, err
	}
	if token != "" {
		// Before the pod, which needs it: a sidecar without its token
		// would wait in CreateContainerConfigError.
		bsec := newObject("v1", "Secret", bridgeSecretName(req.InstanceID), ns, labels)
		bsec.Type, bsec.Data = corev1.SecretTypeOpaque, map[string][]byte{gateway.EnvRelayToken: []byte(token)}
		if err := p.api.secrets(ns).apply(ctx, bsec); err != nil {
			return nil, wrapAPI("apply secret "+bsec.Metadata.Name, err)
		}
	}
	crashpoint.Hit("kubernetes/after-secrets")

	ctr := &container{Name: "service", Image: image, Args: args,
		// IfNotPresent: a tag already on the node (imported, or pulled for
		// an earlier instance) starts without a registry round trip.
		ImagePullPolicy: corev1.PullIfNotPresent,
		EnvFrom:         []envFromSource{{SecretRef: localObjectReference{Name: name}}},
		Resources:       res}
	var svcPorts []servicePort
	var npPorts []networkPolicyPort
	for _, pt := range req.Package.Manifest.Ports {
		proto := corev1.ProtocolTCP
		if pt.Protocol == "udp" {
			proto = corev1.ProtocolUDP
		}
		pname := portName(pt, len(svcPorts))
		ctr.Ports = append(ctr.Ports, containerPort{Name: pname, ContainerPort: int32(pt.Port), Protocol: proto})
		svcPorts = append(svcPorts, servicePort{Name: pname, Port: int32(pt.Port),
			TargetPort: intstr.FromInt32(int32(pt.Port)), Protocol: proto})
		npPorts = append(npPorts, networkPolicyPort{Protocol: proto, Port: intstr.FromInt32(int32(pt.Port))})
	}
	ctr.ReadinessProbe = readinessProbe(req.Package.Manifest)
	// Storage asks for a volume that outlives the pod: a StatefulSet with
	// one claim, mounted where DATA_DIR (as the local provider sets it)
	// points. Set before the container is copied into the pod spec.
	storage := req.Package.Manifest.Resources.Storage
	var size resource.Quantity
	if storage != "" {
		if size, err = resource.ParseQuantity(storage); err != nil {
			return nil, fmt.Errorf("kubernetes: manifest storage %q: %w", storage, err)
		}
		ctr.VolumeMounts = []volumeMount{{Name: "data", MountPath: DataDir}}
		ctr.Env = []envVar{{Name: "DATA_DIR", Value: DataDir}}
	}
	var initCtrs []container
	var vols []volume
	if token != "" {
		path := p.BridgeSocketPath(req.BlueprintID, req.ServiceID)
		ctr.VolumeMounts = append(ctr.VolumeMounts, volumeMount{Name: bridgeVolumeName, MountPath: gateway.BridgeDir})
		initCtrs, vols = []container{p.bridgeSidecar(req.InstanceID, path, relay)}, []volume{bridgeVolume()}
	}
	podSpec := podSpec{Containers: []container{*ctr}, InitContainers: initCtrs, Volumes: vols,
		// Instances talk to the chain and the manager, not to the
		// Kubernetes API: no token in the pod.
		AutomountServiceAccountToken: false,
		EnableServiceLinks:           false,
		NodeSelector:                 p.cfg.NodeSelector,
	}
	if req.Package.Manifest.Resources.GPU > 0 {
		// GPU node pools are commonly tainted so that only pods asking for
		// GPUs land there (AKS, EKS; GKE adds this toleration itself).
		podSpec.Tolerations = []toleration{{Key: string(gpuResource),
			Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	podSpec.ImagePullSecrets = pullSecrets(p.cfg.ImagePullSecrets)
	podSpec.RuntimeClassName = p.runtimeClass(req.Package.Manifest)
	template := podTemplateSpec{Metadata: objectMeta{Labels: labels}, Spec: podSpec}
	// After the Secret (which the pod needs, and which marks a deploy
	// begun), the rest is independent: applied concurrently, so deploy
	// initiation costs two API round trips, not four.
	var applies []func() error
	selector := labelSelector{MatchLabels: map[string]string{LabelInstance: req.InstanceID}}
	if storage != "" {
		claim := newObject("v1", "PersistentVolumeClaim", "data", "", labels)
		claim.Metadata.Namespace = new(string)
		claim.Spec = volumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: resources{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}}
		sts := newObject("apps/v1", "StatefulSet", name, ns, labels)
		sts.Spec = statefulSetSpec{Replicas: 1, ServiceName: name, Selector: selector,
			// The claim goes with the instance: terminate frees everything.
			PersistentVolumeClaimRetentionPolicy: pvcRetention{
				WhenDeleted: string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType),
				WhenScaled:  string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)},
			Template:             template,
			VolumeClaimTemplates: []*object{claim}}
		applies = append(applies, func() error {
			return wrapIf("apply statefulset "+name, p.api.statefulSets(ns).apply(ctx, sts))
		})
	} else {
		dep := newObject("apps/v1", "Deployment", name, ns, labels)
		dep.Spec = deploymentSpec{Replicas: 1,
			// Recreate: one instance is one pod; a surge pod would count
			// twice against the quota and could run two copies at once.
			Strategy: strategy{Type: "Recreate"},
			Selector: selector,
			Template: template}
		applies = append(applies, func() error {
			return wrapIf("apply deployment "+name, p.api.deployments(ns).apply(ctx, dep))
		})
	}

	if len(svcPorts) > 0 {
		svc := newObject("v1", "Service", name, ns, labels)
		svc.Spec = serviceSpec{Type: corev1.ServiceTypeClusterIP,
			Selector: map[string]string{LabelInstance: req.InstanceID}, Ports: svcPorts}
		applies = append(applies, func() error {
			return wrapIf("apply service "+name, p.api.services(ns).apply(ctx, svc))
		})
	}

	// Only this remote's gateway may connect: everything else reaches an
	// instance through the hub and the auth proxy. (Enforced by the
	// cluster's network plugin; plain bridge CNIs ignore it.)
	np := newObject("networking.k8s.io/v1", "NetworkPolicy", name, ns, labels)
	np.Spec = networkPolicySpec{
		PodSelector: labelSelector{MatchLabels: map[string]string{LabelInstance: req.InstanceID}},
		PolicyTypes: []string{"Ingress"},
		Ingress: []networkPolicyRule{{Ports: npPorts,
			From: []networkPolicyPeer{{PodSelector: labelSelector{MatchLabels: gatewayLabels(p.remote)}}}}}}
	applies = append(applies, func() error {
		return wrapIf("apply networkpolicy "+name, p.api.networkPolicies(ns).apply(ctx, np))
	})
	errs := make([]error, len(applies))
	var wg sync.WaitGroup
	for i, apply := range applies {
		wg.Go(func() { errs[i] = apply() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.log.Debug("deployed", "instance", req.InstanceID, "image", image)
	return p.handleFor(req.InstanceID), nil
}

// applyFirst applies the instance's Secret, from which on the instance
// counts (ListOwned), and makes sure the remote's gateway is still there:
// the last instance's terminate removes it, and may have done so between
// this deploy's EstablishTunnel and now. Under lifecycle, so that a
// terminate either sees this instance and keeps the gateway, or removed
// the gateway before and it is applied again here.
func (p *Provider) applyFirst(ctx context.Context, sec *object) error {
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if err := p.api.secrets(p.ns()).apply(ctx, sec); err != nil {
		return wrapAPI("apply secret "+sec.Metadata.Name, err)
	}
	if p.tunnel == nil {
		// No tunnel established by this process (a caller without a
		// hub, such as the conformance suite): no gateway to keep.
		return nil
	}
	return p.restoreGateway(ctx)
}

// runtimeClass is the RuntimeClass the instance's pods need: the remote's
// runtime_class when the manifest asks for isolation = "vm", else none
// (the cluster's default runtime). Whether the class exists is left to the
// cluster: most tenants may not read RuntimeClasses, and the admission
// controller's refusal, which Status reports, is the authoritative answer.
func (p *Provider) runtimeClass(m blueprint.Manifest) string {
	switch {
	case !m.WantsVM():
		return ""
	case p.cfg.RuntimeClass == "":
		return DefaultRuntimeClass
	}
	return p.cfg.RuntimeClass
}

func wrapIf(step string, err error) error {
	if err == nil {
		return nil
	}
	return wrapAPI(step, err)
}

func portName(pt blueprint.Port, i int) string {
	if pt.Name != "" && len(pt.Name) <= 15 && dns1123Label.MatchString(pt.Name) {
		return pt.Name
	}
	return "p" + strconv.Itoa(i)
}

// readinessProbe makes the pod Ready only when the service answers, so
// Status says running exactly when a request would succeed.
func readinessProbe(m blueprint.Manifest) *probe {
	if m.Health == nil || m.Health.HTTP == "" {
		return nil
	}
	var port int
	for _, pt := range m.Ports {
		if pt.Protocol == "" || pt.Protocol == "tcp" {
			port = pt.Port
			break
		}
	}
	if port == 0 {
		return nil
	}
	path := m.Health.HTTP
	if path[0] != '/' {
		path = "/" + path
	}
	pr := &probe{PeriodSeconds: 1, HTTPGet: &httpGetAction{Path: path, Port: intstr.FromInt(port)}}
	if t := m.Health.Timeout.Duration; t > 0 {
		pr.TimeoutSeconds = int32(max(1, t.Seconds()))
	}
	return pr
}

// containerResources: the manifest's cpu and memory are the requests (what
// the scheduler reserves); the remote's [resources] limits cap each
// instance, defaulting to the request so an instance cannot take more than
// it asked for.
func (p *Provider) containerResources(r blueprint.Resources) (resources, error) {
	req, lim := corev1.ResourceList{}, corev1.ResourceList{}
	for _, f := range []struct {
		name          corev1.ResourceName
		want, ceiling string
	}{
		{corev1.ResourceCPU, r.CPU, p.cfg.Resources.CPULimit},
		{corev1.ResourceMemory, r.Memory, p.cfg.Resources.MemoryLimit},
	} {
		var w, c resource.Quantity
		var err error
		if f.want != "" {
			if w, err = resource.ParseQuantity(f.want); err != nil {
				return resources{}, fmt.Errorf("kubernetes: manifest %s %q: %w", f.name, f.want, err)
			}
			req[f.name] = w
			lim[f.name] = w
		}
		if f.ceiling != "" {
			if c, err = resource.ParseQuantity(f.ceiling); err != nil {
				return resources{}, fmt.Errorf("kubernetes: %s_limit %q: %w", f.name, f.ceiling, err)
			}
			if f.want != "" && w.Cmp(c) > 0 {
				return resources{}, fmt.Errorf("kubernetes: the manifest asks for %s %s, more than this remote's limit %s: %w",
					f.name, w.String(), c.String(), provider.ErrQuota)
			}
			lim[f.name] = c
		}
	}
	if r.GPU > 0 {
		// Extended resources are set as limits; the request follows.
		lim[gpuResource] = *resource.NewQuantity(int64(r.GPU), resource.DecimalSI)
	}
	var out resources
	if len(req) > 0 {
		out.Requests = req
	}
	if len(lim) > 0 {
		out.Limits = lim
	}
	return out, nil
}

// checkRoom refuses a new instance beyond max_instances with a clear error
// before anything is created; the ResourceQuota backs this up on the
// cluster. Re-deploying an existing instance is always allowed.
func (p *Provider) checkRoom(ctx context.Context, id string) error {
	limit := p.cfg.Resources.MaxInstances
	if limit <= 0 {
		return nil
	}
	owned, err := p.ListOwned(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(owned))
	for _, o := range owned {
		ids = append(ids, o.InstanceID)
	}
	if slices.Contains(ids, id) || len(ids) < limit {
		return nil
	}
	return fmt.Errorf("kubernetes: remote %s already runs %d instances (max_instances = %d): %w",
		p.remote, len(ids), limit, provider.ErrQuota)
}

func gatewayLabels(remote string) map[string]string {
	return map[string]string{LabelManagedBy: managedBy, LabelComponent: "gateway", LabelRemote: remote}
}

// pullSecrets references the remote's image_pull_secrets.
func pullSecrets(names []string) []localObjectReference {
	var refs []localObjectReference
	for _, s := range names {
		refs = append(refs, localObjectReference{Name: s})
	}
	return refs
}
