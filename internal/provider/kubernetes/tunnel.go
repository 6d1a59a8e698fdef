package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bpm-project/bpm/internal/gateway"
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
	// Held through the wait too: a terminate removing the gateway with
	// the last instance would otherwise turn the wait into a NotFound.
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if err := p.applyGateway(ctx, spec); err != nil {
		return provider.TunnelInfo{}, err
	}
	p.tunnel = &spec
	if err := p.waitGateway(ctx); err != nil {
		return provider.TunnelInfo{}, err
	}
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// applyGateway applies the gateway's Secret and Deployment for spec.
// Callers hold lifecycle.
func (p *Provider) applyGateway(ctx context.Context, spec provider.TunnelSpec) error {
	ns, labels := p.ns(), gatewayLabels(p.remote)
	env := spec.GatewayEnv()
	data := make(map[string][]byte, len(env))
	for k, v := range env {
		data[k] = []byte(v)
	}
	sec := newObject("v1", "Secret", gatewayName(p.remote), ns, labels)
	sec.Type, sec.Data = corev1.SecretTypeOpaque, data
	if err := p.api.secrets(ns).apply(ctx, sec); err != nil {
		return wrapAPI("apply gateway secret", err)
	}
	image, pull := p.gatewayImage()
	ctr := container{Name: "gateway", Image: image, ImagePullPolicy: pull,
		EnvFrom: []envFromSource{{SecretRef: localObjectReference{Name: gatewayName(p.remote)}}},
		// The bridge relay for the instances' sidecars (bridge.go); not a
		// secret, so not in the Secret.
		Env:   []envVar{{Name: gateway.EnvBridgeListen, Value: relayListen}},
		Ports: []containerPort{{Name: relayPortName, ContainerPort: gateway.BridgeRelayPort, Protocol: corev1.ProtocolTCP}},
		Resources: resources{
			Requests: corev1.ResourceList{corev1.ResourceCPU: gatewayCPU, corev1.ResourceMemory: gatewayMemory},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: gatewayCPU, corev1.ResourceMemory: gatewayMemory}},
		// Userspace WireGuard: no capabilities, no TUN device.
		SecurityContext: unprivileged()}
	dep := newObject("apps/v1", "Deployment", gatewayName(p.remote), ns, labels)
	dep.Spec = deploymentSpec{Replicas: 1,
		// Recreate: two gateways with one key would fight over the hub's
		// single peer entry for this remote.
		Strategy: strategy{Type: "Recreate"},
		Selector: labelSelector{MatchLabels: labels},
		Template: podTemplateSpec{
			Metadata: objectMeta{Labels: labels,
				Annotations: map[string]string{"bpm.gateway/spec": specDigest(data)}},
			Spec: podSpec{Containers: []container{ctr}, AutomountServiceAccountToken: false,
				EnableServiceLinks: false, ImagePullSecrets: pullSecrets(p.cfg.ImagePullSecrets)}}}
	if err := p.api.deployments(ns).apply(ctx, dep); err != nil {
		return wrapAPI("apply gateway", err)
	}
	return p.applyGatewayRelay(ctx)
}

// gatewaySelector selects everything of this remote's gateway: its
// Deployment and Secret, and the ReplicaSets and pods made from them.
func (p *Provider) gatewaySelector() metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy + "," +
		LabelComponent + "=gateway," + LabelRemote + "=" + p.remote}
}

// restoreGateway applies the last established gateway again if it is gone
// or going. It does not wait for it to run: the instance is created
// meanwhile, and the gateway dials the hub by itself once it is up.
// Callers hold lifecycle, with p.tunnel set.
func (p *Provider) restoreGateway(ctx context.Context) error {
	for {
		dep := &appsv1.Deployment{}
		err := p.api.deployments(p.ns()).get(ctx, gatewayName(p.remote), dep)
		switch {
		case err == nil && dep.DeletionTimestamp == nil:
			return nil
		case apierrors.IsNotFound(err):
			p.log.Info("gateway removed with the remote's last instance; applying it again")
			return p.applyGateway(ctx, *p.tunnel)
		case err != nil:
			return wrapAPI("gateway", err)
		}
		// Still being deleted: applying onto it would be undone by the
		// deletion.
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes: gateway still being deleted: %w", ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

// removeGatewayIfLast deletes the remote's gateway, Deployment and Secret,
// once the remote has no instance left, and waits until its pods are gone,
// as the docker provider removes its gateway container. The namespace and
// the ResourceQuota stay: the namespace may hold other things (or not be
// bpm's to delete), and the quota is what New applied from [resources],
// which the next deploy needs in force without a new provider.
func (p *Provider) removeGatewayIfLast(ctx context.Context) error {
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	owned, err := p.ListOwned(ctx)
	if err != nil {
		return fmt.Errorf("kubernetes: count instances: %w", err)
	}
	if len(owned) > 0 {
		return nil
	}
	ns, sel := p.ns(), p.gatewaySelector()
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	// The relay Service (no deletecollection for Services) and its
	// NetworkPolicy; the next gateway gets a new address.
	if err := p.api.services(ns).delete(ctx, gatewayName(p.remote), del); err != nil && !apierrors.IsNotFound(err) {
		return wrapAPI("remove gateway service", err)
	}
	p.relayAddr = ""
	for _, c := range []struct {
		what string
		col  collection
	}{
		{"deployment", p.api.deployments(ns)},
		{"secret", p.api.secrets(ns)},
		{"networkpolicy", p.api.networkPolicies(ns)},
		// As in Terminate: bounded by the pod's grace period, not the
		// garbage collector.
		{"pods", p.api.pods(ns)},
	} {
		if err := c.col.deleteCollection(ctx, del, sel); err != nil && !apierrors.IsNotFound(err) {
			return wrapAPI("remove gateway "+c.what, err)
		}
	}
	for {
		left, err := p.remaining(ctx, ns, sel)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			p.log.Info("gateway removed with the remote's last instance")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes: remove gateway: still present: %s: %w", strings.Join(left, ", "), ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

// waitGateway waits until the gateway Deployment's current pod runs,
// reporting why it does not (a missing image, most often) instead of a bare
// timeout.
func (p *Provider) waitGateway(ctx context.Context) error {
	var last string
	for {
		dep := &appsv1.Deployment{}
		if err := p.api.deployments(p.ns()).get(ctx, gatewayName(p.remote), dep); err != nil {
			return wrapAPI("gateway", err)
		}
		var pods corev1.PodList
		if err := p.api.pods(p.ns()).list(ctx, metav1.ListOptions{LabelSelector: LabelComponent + "=gateway," + LabelRemote + "=" + p.remote}, &pods); err != nil {
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
