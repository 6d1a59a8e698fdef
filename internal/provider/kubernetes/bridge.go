package kubernetes

import (
	"context"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/gateway"
)

// Bridges. An instance dials its bridge at BRIDGE_SOCKET_PATH, a unix
// socket, as the Blueprint SDK expects. On Docker the gateway serves that
// socket in a volume it shares with the instances; a pod cannot share a
// socket with another pod, so here each instance pod carries a sidecar,
// bpm-bridge, that serves the socket in a memory-backed emptyDir shared
// only by the pod's own containers and relays each connection over the
// cluster network to the gateway's relay port (gateway/bridgerelay.go).
//
// What stands in for the socket's file permissions is the instance's
// relay token: the manager derives it per instance, passes it in the
// deploy's env under gateway.EnvRelayToken, and registers it with the
// gateway. It goes into the Secret bpm-<id>-bridge, which only the sidecar
// reads (envFrom) — not the instance's own Secret, which the service's
// container imports whole, so the service never sees it in its
// environment. The gateway admits a connection only for a registered
// (instance, token) pair; the NetworkPolicy bpm-gateway-<remote> admits
// only this remote's instance pods to the port, as defence in depth (it
// needs a CNI that enforces policies).
//
// The sidecar is a native sidecar (an init container with restartPolicy
// Always, Kubernetes 1.29 and later) with a startup probe on its socket,
// so the service starts only once the socket is there: SDK services ping
// their bridge once at startup and give up on failure. It runs the gateway
// image, whose entrypoint is ["/bpm", "gateway"], with args
// ["bridge-relay"], as the gateway's unprivileged user; its directory is
// 0700 and its socket 0600, so, as on Docker, a service image that runs
// as neither that user nor root gets no bridge.
//
// The sidecar dials the gateway's relay Service by its ClusterIP, not its
// DNS name: clusters without cluster DNS exist (the test cluster is one),
// and the ClusterIP is stable for the Service's life, which spans every
// instance's (the Service goes with the gateway, after the last instance).

// BridgeSocketPath is where instance (blueprintID, serviceID) dials its
// bridge inside its pod: the sidecar's socket, with the same layout as on
// Docker.
func (p *Provider) BridgeSocketPath(blueprintID, serviceID uint64) string {
	return bridge.SocketPath(gateway.BridgeDir, blueprintID, serviceID)
}

// BridgeRelay tells the manager that this provider's instances reach the
// gateway through the relay port and need a relay token.
func (p *Provider) BridgeRelay() bool { return true }

// Room the sidecar needs. The ResourceQuota counts its limits for every
// instance (applyQuota). Memory: the bpm binary idles at ~26 MiB resident.
var (
	sidecarCPURequest = resource.MustParse("10m")
	sidecarCPULimit   = resource.MustParse("100m")
	sidecarMemRequest = resource.MustParse("32Mi")
	sidecarMemLimit   = resource.MustParse("64Mi")
)

const (
	sidecarName      = "bpm-bridge"
	bridgeVolumeName = "bpm-bridge"
	relayPortName    = "bridge-relay"
)

// bridgeSecretName holds an instance's relay token, for its sidecar only.
func bridgeSecretName(id string) string { return objectName(id) + "-bridge" }

// gatewayImage is the remote's gateway image and pull policy, which the
// sidecar runs too.
func (p *Provider) gatewayImage() (string, corev1.PullPolicy) {
	image := p.cfg.GatewayImage
	if image == "" {
		image = DefaultGatewayImage
	}
	pull := corev1.PullIfNotPresent
	if p.cfg.GatewayPullPolicy != "" {
		pull = corev1.PullPolicy(p.cfg.GatewayPullPolicy)
	}
	return image, pull
}

// unprivileged is the security context of the gateway and the sidecar.
func unprivileged() *securityContext {
	return &securityContext{AllowPrivilegeEscalation: false,
		RunAsNonRoot: true, RunAsUser: 65534,
		Capabilities: capabilities{Drop: []corev1.Capability{"ALL"}}}
}

// bridgeSidecar is the relay sidecar of instance id, serving path and
// dialling relay (the gateway Service's ClusterIP:port).
func (p *Provider) bridgeSidecar(id, path, relay string) container {
	image, pull := p.gatewayImage()
	return container{Name: sidecarName, Image: image, Args: []string{"bridge-relay"}, ImagePullPolicy: pull,
		// Native sidecar: started before the service, kept running beside it.
		RestartPolicy: "Always",
		EnvFrom:       []envFromSource{{SecretRef: localObjectReference{Name: bridgeSecretName(id)}}},
		Env: []envVar{
			{Name: gateway.EnvRelayListen, Value: path},
			{Name: gateway.EnvRelayGateway, Value: relay},
			{Name: gateway.EnvRelayInstance, Value: id},
		},
		Resources: resources{
			Requests: corev1.ResourceList{corev1.ResourceCPU: sidecarCPURequest, corev1.ResourceMemory: sidecarMemRequest},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: sidecarCPULimit, corev1.ResourceMemory: sidecarMemLimit}},
		StartupProbe: &probe{Exec: &execAction{Command: []string{"/bpm", "gateway", "bridge-relay", "--check"}},
			PeriodSeconds: 1, FailureThreshold: 30},
		VolumeMounts:    []volumeMount{{Name: bridgeVolumeName, MountPath: gateway.BridgeDir}},
		SecurityContext: unprivileged()}
}

// bridgeVolume holds the sidecar's socket: memory-backed (nothing on the
// node's disk) and tiny (a socket takes no space).
func bridgeVolume() volume {
	return volume{Name: bridgeVolumeName, EmptyDir: &emptyDirSource{Medium: "Memory", SizeLimit: resource.MustParse("1Mi")}}
}

// relayListen is what the gateway listens on for sidecars.
var relayListen = ":" + strconv.Itoa(gateway.BridgeRelayPort)

// gatewayRelayObjects are the gateway's relay Service and the
// NetworkPolicy admitting only this remote's instance pods to it.
func (p *Provider) gatewayRelayObjects() (svc, np *object) {
	ns, labels := p.ns(), gatewayLabels(p.remote)
	svc = newObject("v1", "Service", gatewayName(p.remote), ns, labels)
	svc.Spec = serviceSpec{Type: corev1.ServiceTypeClusterIP, Selector: labels,
		Ports: []servicePort{{Name: relayPortName, Port: gateway.BridgeRelayPort,
			TargetPort: intstr.FromString(relayPortName), Protocol: corev1.ProtocolTCP}}}
	np = newObject("networking.k8s.io/v1", "NetworkPolicy", gatewayName(p.remote), ns, labels)
	np.Spec = networkPolicySpec{
		PodSelector: labelSelector{MatchLabels: labels},
		PolicyTypes: []string{"Ingress"},
		Ingress: []networkPolicyRule{{
			Ports: []networkPolicyPort{{Protocol: corev1.ProtocolTCP, Port: intstr.FromString(relayPortName)}},
			From: []networkPolicyPeer{{PodSelector: labelSelector{
				MatchLabels: map[string]string{LabelManagedBy: managedBy, LabelRemote: p.remote},
				// Instances carry bpm.instance; the gateway does not.
				MatchExpressions: []labelSelectorRequirement{{Key: LabelInstance, Operator: "Exists"}},
			}}},
		}}}
	return svc, np
}

// applyGatewayRelay applies the relay Service and NetworkPolicy and
// remembers the Service's address for the sidecars. Callers hold
// lifecycle.
func (p *Provider) applyGatewayRelay(ctx context.Context) error {
	svc, np := p.gatewayRelayObjects()
	if err := p.api.networkPolicies(p.ns()).apply(ctx, np); err != nil {
		return wrapAPI("apply gateway networkpolicy", err)
	}
	var got corev1.Service
	if err := p.api.services(p.ns()).applyInto(ctx, svc, &got); err != nil {
		return wrapAPI("apply gateway service", err)
	}
	if got.Spec.ClusterIP == "" || got.Spec.ClusterIP == corev1.ClusterIPNone {
		return fmt.Errorf("kubernetes: gateway service %s has no cluster IP", svc.Metadata.Name)
	}
	p.relayAddr = net.JoinHostPort(got.Spec.ClusterIP, strconv.Itoa(gateway.BridgeRelayPort))
	return nil
}

// gatewayRelayAddr is where sidecars dial the gateway: remembered from
// applying its Service, else read from the cluster (a provider that did
// not establish the tunnel itself).
func (p *Provider) gatewayRelayAddr(ctx context.Context) (string, error) {
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if p.relayAddr != "" {
		return p.relayAddr, nil
	}
	var svc corev1.Service
	if err := p.api.services(p.ns()).get(ctx, gatewayName(p.remote), &svc); err != nil {
		return "", wrapAPI("gateway relay service", err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "", fmt.Errorf("kubernetes: gateway service %s has no cluster IP", svc.Name)
	}
	p.relayAddr = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(gateway.BridgeRelayPort))
	return p.relayAddr, nil
}
