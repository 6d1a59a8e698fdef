package kubernetes

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/bpm-project/bpm/internal/provider"
)

// DefaultGatewayImage is used when a remote sets no gateway_image.
const DefaultGatewayImage = "ghcr.io/bpm-project/bpm-gateway:latest"

// EstablishTunnel applies the remote's one gateway: a Secret holding the
// whole gateway environment (the WireGuard private key among it) and a
// Deployment that reads it with envFrom, then waits for the pod to run.
// Applying is idempotent, and a changed spec (a new key) rolls the pod
// because the Secret's content hash is in the pod template.
func (p *Provider) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	ns, labels := p.ns(), gatewayLabels(p.remote)
	env := spec.GatewayEnv()
	data := make(map[string][]byte, len(env))
	for k, v := range env {
		data[k] = []byte(v)
	}
	sec := corev1ac.Secret(gatewayName(p.remote), ns).WithLabels(labels).WithType(corev1.SecretTypeOpaque).WithData(data)
	if _, err := p.cs.CoreV1().Secrets(ns).Apply(ctx, sec, p.apply()); err != nil {
		return provider.TunnelInfo{}, wrapAPI("apply gateway secret", err)
	}
	image := p.cfg.GatewayImage
	if image == "" {
		image = DefaultGatewayImage
	}
	pull := corev1.PullIfNotPresent
	if p.cfg.GatewayPullPolicy != "" {
		pull = corev1.PullPolicy(p.cfg.GatewayPullPolicy)
	}
	ctr := corev1ac.Container().WithName("gateway").WithImage(image).WithImagePullPolicy(pull).
		WithEnvFrom(corev1ac.EnvFromSource().WithSecretRef(corev1ac.SecretEnvSource().WithName(gatewayName(p.remote)))).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: gatewayCPU, corev1.ResourceMemory: gatewayMemory}).
			WithLimits(corev1.ResourceList{corev1.ResourceCPU: gatewayCPU, corev1.ResourceMemory: gatewayMemory})).
		// Userspace WireGuard: no capabilities, no TUN device.
		WithSecurityContext(corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false).
			WithRunAsNonRoot(true).WithRunAsUser(65534).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
	podSpec := corev1ac.PodSpec().WithContainers(ctr).WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false)
	for _, s := range p.cfg.ImagePullSecrets {
		podSpec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s))
	}
	dep := appsv1ac.Deployment(gatewayName(p.remote), ns).WithLabels(labels).WithSpec(appsv1ac.DeploymentSpec().
		WithReplicas(1).
		// Recreate: two gateways with one key would fight over the hub's
		// single peer entry for this remote.
		WithStrategy(appsv1ac.DeploymentStrategy().WithType("Recreate")).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(labels)).
		WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).
			WithAnnotations(map[string]string{"bpm.gateway/spec": specDigest(data)}).
			WithSpec(podSpec)))
	if _, err := p.cs.AppsV1().Deployments(ns).Apply(ctx, dep, p.apply()); err != nil {
		return provider.TunnelInfo{}, wrapAPI("apply gateway", err)
	}
	if err := p.waitGateway(ctx); err != nil {
		return provider.TunnelInfo{}, err
	}
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// waitGateway waits until the gateway Deployment's current pod runs,
// reporting why it does not (a missing image, most often) instead of a bare
// timeout.
func (p *Provider) waitGateway(ctx context.Context) error {
	var last string
	for {
		dep, err := p.cs.AppsV1().Deployments(p.ns()).Get(ctx, gatewayName(p.remote), metav1.GetOptions{})
		if err != nil {
			return wrapAPI("gateway", err)
		}
		pods, err := p.cs.CoreV1().Pods(p.ns()).List(ctx, metav1.ListOptions{LabelSelector: LabelComponent + "=gateway," + LabelRemote + "=" + p.remote})
		if err != nil {
			return wrapAPI("gateway", err)
		}
		upToDate := dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas >= 1
		st := deploymentStatus(dep, newestPod(pods.Items))
		switch {
		case st.State == provider.StateFailed:
			return fmt.Errorf("kubernetes: gateway: %s", st.Message)
		case upToDate && dep.Status.AvailableReplicas >= 1 && runningPods(pods.Items) == 1:
			return nil
		}
		last = st.Message
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes: gateway not running (%s): %w", last, ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

func runningPods(pods []corev1.Pod) int {
	n := 0
	for _, x := range pods {
		if x.DeletionTimestamp == nil && x.Status.Phase == corev1.PodRunning {
			n++
		}
	}
	return n
}
