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
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	netv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/bpm-project/bpm/internal/blueprint"
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

	// The env lives only in the Secret: a Deployment's env is readable by
	// anyone who may read Deployments, and shows in `kubectl describe`.
	data := make(map[string][]byte, len(req.Env))
	for k, v := range req.Env {
		data[k] = []byte(v)
	}
	sec := corev1ac.Secret(name, ns).WithLabels(labels).WithType(corev1.SecretTypeOpaque).WithData(data)
	if _, err := p.cs.CoreV1().Secrets(ns).Apply(ctx, sec, p.apply()); err != nil {
		return nil, wrapAPI("apply secret "+name, err)
	}

	ctr := corev1ac.Container().WithName("service").WithImage(image).WithArgs(args...).
		// IfNotPresent: a tag already on the node (imported, or pulled for
		// an earlier instance) starts without a registry round trip.
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithEnvFrom(corev1ac.EnvFromSource().WithSecretRef(corev1ac.SecretEnvSource().WithName(name))).
		WithResources(res)
	var svcPorts []*corev1ac.ServicePortApplyConfiguration
	var npPorts []*netv1ac.NetworkPolicyPortApplyConfiguration
	for _, pt := range req.Package.Manifest.Ports {
		proto := corev1.ProtocolTCP
		if pt.Protocol == "udp" {
			proto = corev1.ProtocolUDP
		}
		pname := portName(pt, len(svcPorts))
		ctr.WithPorts(corev1ac.ContainerPort().WithName(pname).WithContainerPort(int32(pt.Port)).WithProtocol(proto))
		svcPorts = append(svcPorts, corev1ac.ServicePort().WithName(pname).WithPort(int32(pt.Port)).
			WithTargetPort(intstr.FromInt32(int32(pt.Port))).WithProtocol(proto))
		npPorts = append(npPorts, netv1ac.NetworkPolicyPort().WithProtocol(proto).WithPort(intstr.FromInt32(int32(pt.Port))))
	}
	if probe := readinessProbe(req.Package.Manifest); probe != nil {
		ctr.WithReadinessProbe(probe)
	}
	podSpec := corev1ac.PodSpec().WithContainers(ctr).
		// Instances talk to the chain and the manager, not to the
		// Kubernetes API: no token in the pod.
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false)
	if len(p.cfg.NodeSelector) > 0 {
		podSpec.WithNodeSelector(p.cfg.NodeSelector)
	}
	if req.Package.Manifest.Resources.GPU > 0 {
		// GPU node pools are commonly tainted so that only pods asking for
		// GPUs land there (AKS, EKS; GKE adds this toleration itself).
		podSpec.WithTolerations(corev1ac.Toleration().WithKey(string(gpuResource)).
			WithOperator(corev1.TolerationOpExists).WithEffect(corev1.TaintEffectNoSchedule))
	}
	for _, s := range p.cfg.ImagePullSecrets {
		podSpec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s))
	}
	// After the Secret (which the pod needs, and which marks a deploy
	// begun), the rest is independent: applied concurrently, so deploy
	// initiation costs two API round trips, not four.
	var applies []func() error
	selector := metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelInstance: req.InstanceID})
	if storage := req.Package.Manifest.Resources.Storage; storage != "" {
		// Storage asks for a volume that outlives the pod: a StatefulSet
		// with one claim, mounted where DATA_DIR (as the local provider
		// sets it) points.
		size, err := resource.ParseQuantity(storage)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: manifest storage %q: %w", storage, err)
		}
		ctr.WithVolumeMounts(corev1ac.VolumeMount().WithName("data").WithMountPath(DataDir)).
			WithEnv(corev1ac.EnvVar().WithName("DATA_DIR").WithValue(DataDir))
		sts := appsv1ac.StatefulSet(name, ns).WithLabels(labels).WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(1).WithServiceName(name).WithSelector(selector).
			// The claim goes with the instance: terminate frees everything.
			WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
				WithWhenDeleted(appsv1.DeletePersistentVolumeClaimRetentionPolicyType).
				WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(podSpec)).
			WithVolumeClaimTemplates(corev1ac.PersistentVolumeClaim("data", "").WithLabels(labels).
				WithSpec(corev1ac.PersistentVolumeClaimSpec().
					WithAccessModes(corev1.ReadWriteOnce).
					WithResources(corev1ac.VolumeResourceRequirements().
						WithRequests(corev1.ResourceList{corev1.ResourceStorage: size})))))
		applies = append(applies, func() error {
			_, err := p.cs.AppsV1().StatefulSets(ns).Apply(ctx, sts, p.apply())
			return wrapIf("apply statefulset "+name, err)
		})
	} else {
		dep := appsv1ac.Deployment(name, ns).WithLabels(labels).WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(1).
			// Recreate: one instance is one pod; a surge pod would count
			// twice against the quota and could run two copies at once.
			WithStrategy(appsv1ac.DeploymentStrategy().WithType("Recreate")).
			WithSelector(selector).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(podSpec)))
		applies = append(applies, func() error {
			_, err := p.cs.AppsV1().Deployments(ns).Apply(ctx, dep, p.apply())
			return wrapIf("apply deployment "+name, err)
		})
	}

	if len(svcPorts) > 0 {
		svc := corev1ac.Service(name, ns).WithLabels(labels).WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).WithSelector(map[string]string{LabelInstance: req.InstanceID}).
			WithPorts(svcPorts...))
		applies = append(applies, func() error {
			_, err := p.cs.CoreV1().Services(ns).Apply(ctx, svc, p.apply())
			return wrapIf("apply service "+name, err)
		})
	}

	// Only this remote's gateway may connect: everything else reaches an
	// instance through the hub and the auth proxy. (Enforced by the
	// cluster's network plugin; plain bridge CNIs ignore it.)
	np := netv1ac.NetworkPolicy(name, ns).WithLabels(labels).WithSpec(netv1ac.NetworkPolicySpec().
		WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelInstance: req.InstanceID})).
		WithPolicyTypes("Ingress").
		WithIngress(netv1ac.NetworkPolicyIngressRule().WithPorts(npPorts...).WithFrom(
			netv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(gatewayLabels(p.remote))))))
	applies = append(applies, func() error {
		_, err := p.cs.NetworkingV1().NetworkPolicies(ns).Apply(ctx, np, p.apply())
		return wrapIf("apply networkpolicy "+name, err)
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
func readinessProbe(m blueprint.Manifest) *corev1ac.ProbeApplyConfiguration {
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
	probe := corev1ac.Probe().WithPeriodSeconds(1).WithHTTPGet(
		corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromInt(port)))
	if t := m.Health.Timeout.Duration; t > 0 {
		probe.WithTimeoutSeconds(int32(max(1, t.Seconds())))
	}
	return probe
}

// containerResources: the manifest's cpu and memory are the requests (what
// the scheduler reserves); the remote's [resources] limits cap each
// instance, defaulting to the request so an instance cannot take more than
// it asked for.
func (p *Provider) containerResources(r blueprint.Resources) (*corev1ac.ResourceRequirementsApplyConfiguration, error) {
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
				return nil, fmt.Errorf("kubernetes: manifest %s %q: %w", f.name, f.want, err)
			}
			req[f.name] = w
			lim[f.name] = w
		}
		if f.ceiling != "" {
			if c, err = resource.ParseQuantity(f.ceiling); err != nil {
				return nil, fmt.Errorf("kubernetes: %s_limit %q: %w", f.name, f.ceiling, err)
			}
			if f.want != "" && w.Cmp(c) > 0 {
				return nil, fmt.Errorf("kubernetes: the manifest asks for %s %s, more than this remote's limit %s: %w",
					f.name, w.String(), c.String(), provider.ErrQuota)
			}
			lim[f.name] = c
		}
	}
	if r.GPU > 0 {
		// Extended resources are set as limits; the request follows.
		lim[gpuResource] = *resource.NewQuantity(int64(r.GPU), resource.DecimalSI)
	}
	out := corev1ac.ResourceRequirements()
	if len(req) > 0 {
		out.WithRequests(req)
	}
	if len(lim) > 0 {
		out.WithLimits(lim)
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
