package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The bodies of bpm's server-side apply patches: just the fields bpm sets,
// in the API's JSON shape. With server-side apply the body is what bpm owns,
// so every field here is one bpm means to set; the k8s.io/api types would
// send every other field as its zero value (and own it). client-go's apply
// configurations do the same job but link every API group (see client).
// TestRequests pins the JSON these produce.

// object is one whole object: its type, metadata and content.
type object struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       any        `json:"spec,omitempty"`
	// Secrets only.
	Type corev1.SecretType `json:"type,omitempty"`
	Data map[string][]byte `json:"data,omitempty"`
}

type objectMeta struct {
	Name string `json:"name,omitempty"`
	// Namespace is a pointer because a volume claim template sets it,
	// empty.
	Namespace   *string           `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// newObject starts an object in namespace ns ("" for a cluster-scoped one).
func newObject(apiVersion, kind, name, ns string, labels map[string]string) *object {
	o := &object{APIVersion: apiVersion, Kind: kind, Metadata: objectMeta{Name: name, Labels: labels}}
	if ns != "" {
		o.Metadata.Namespace = &ns
	}
	return o
}

type resourceQuotaSpec struct {
	Hard corev1.ResourceList `json:"hard"`
}

type deploymentSpec struct {
	Replicas int32           `json:"replicas"`
	Strategy strategy        `json:"strategy"`
	Selector labelSelector   `json:"selector"`
	Template podTemplateSpec `json:"template"`
}

type strategy struct {
	Type string `json:"type"`
}

type statefulSetSpec struct {
	Replicas                             int32           `json:"replicas"`
	ServiceName                          string          `json:"serviceName"`
	Selector                             labelSelector   `json:"selector"`
	PersistentVolumeClaimRetentionPolicy pvcRetention    `json:"persistentVolumeClaimRetentionPolicy"`
	Template                             podTemplateSpec `json:"template"`
	VolumeClaimTemplates                 []*object       `json:"volumeClaimTemplates"`
}

type pvcRetention struct {
	WhenDeleted string `json:"whenDeleted"`
	WhenScaled  string `json:"whenScaled"`
}

type volumeClaimSpec struct {
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes"`
	Resources   resources                           `json:"resources"`
}

type labelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels"`
	MatchExpressions []labelSelectorRequirement `json:"matchExpressions,omitempty"`
}

type labelSelectorRequirement struct {
	Key      string `json:"key"`
	Operator string `json:"operator"`
}

type podTemplateSpec struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type podSpec struct {
	// InitContainers holds the bridge sidecar (restartPolicy Always).
	InitContainers               []container            `json:"initContainers,omitempty"`
	Containers                   []container            `json:"containers"`
	Volumes                      []volume               `json:"volumes,omitempty"`
	AutomountServiceAccountToken bool                   `json:"automountServiceAccountToken"`
	EnableServiceLinks           bool                   `json:"enableServiceLinks"`
	NodeSelector                 map[string]string      `json:"nodeSelector,omitempty"`
	Tolerations                  []toleration           `json:"tolerations,omitempty"`
	ImagePullSecrets             []localObjectReference `json:"imagePullSecrets,omitempty"`
	RuntimeClassName             string                 `json:"runtimeClassName,omitempty"`
}

type toleration struct {
	Key      string                    `json:"key"`
	Operator corev1.TolerationOperator `json:"operator"`
	Effect   corev1.TaintEffect        `json:"effect"`
}

type localObjectReference struct {
	Name string `json:"name"`
}

type container struct {
	Name            string            `json:"name"`
	Image           string            `json:"image"`
	Args            []string          `json:"args,omitempty"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy"`
	EnvFrom         []envFromSource   `json:"envFrom"`
	Env             []envVar          `json:"env,omitempty"`
	Ports           []containerPort   `json:"ports,omitempty"`
	Resources       resources         `json:"resources"`
	ReadinessProbe  *probe            `json:"readinessProbe,omitempty"`
	StartupProbe    *probe            `json:"startupProbe,omitempty"`
	RestartPolicy   string            `json:"restartPolicy,omitempty"`
	VolumeMounts    []volumeMount     `json:"volumeMounts,omitempty"`
	SecurityContext *securityContext  `json:"securityContext,omitempty"`
}

type envFromSource struct {
	SecretRef localObjectReference `json:"secretRef"`
}

type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type containerPort struct {
	Name          string          `json:"name"`
	ContainerPort int32           `json:"containerPort"`
	Protocol      corev1.Protocol `json:"protocol"`
}

// resources is a container's resources or a volume claim's.
type resources struct {
	Limits   corev1.ResourceList `json:"limits,omitempty"`
	Requests corev1.ResourceList `json:"requests,omitempty"`
}

type probe struct {
	HTTPGet          *httpGetAction `json:"httpGet,omitempty"`
	Exec             *execAction    `json:"exec,omitempty"`
	PeriodSeconds    int32          `json:"periodSeconds"`
	TimeoutSeconds   int32          `json:"timeoutSeconds,omitempty"`
	FailureThreshold int32          `json:"failureThreshold,omitempty"`
}

type execAction struct {
	Command []string `json:"command"`
}

type volume struct {
	Name     string          `json:"name"`
	EmptyDir *emptyDirSource `json:"emptyDir,omitempty"`
}

type emptyDirSource struct {
	Medium    string            `json:"medium,omitempty"`
	SizeLimit resource.Quantity `json:"sizeLimit"`
}

type httpGetAction struct {
	Path string             `json:"path"`
	Port intstr.IntOrString `json:"port"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

type securityContext struct {
	AllowPrivilegeEscalation bool         `json:"allowPrivilegeEscalation"`
	RunAsNonRoot             bool         `json:"runAsNonRoot"`
	RunAsUser                int64        `json:"runAsUser"`
	Capabilities             capabilities `json:"capabilities"`
}

type capabilities struct {
	Drop []corev1.Capability `json:"drop"`
}

type serviceSpec struct {
	Type     corev1.ServiceType `json:"type"`
	Selector map[string]string  `json:"selector"`
	Ports    []servicePort      `json:"ports"`
}

type servicePort struct {
	Name       string             `json:"name"`
	Port       int32              `json:"port"`
	TargetPort intstr.IntOrString `json:"targetPort"`
	Protocol   corev1.Protocol    `json:"protocol"`
}

type networkPolicySpec struct {
	PodSelector labelSelector       `json:"podSelector"`
	PolicyTypes []string            `json:"policyTypes"`
	Ingress     []networkPolicyRule `json:"ingress"`
}

type networkPolicyRule struct {
	Ports []networkPolicyPort `json:"ports,omitempty"`
	From  []networkPolicyPeer `json:"from"`
}

type networkPolicyPort struct {
	Protocol corev1.Protocol    `json:"protocol"`
	Port     intstr.IntOrString `json:"port"`
}

type networkPolicyPeer struct {
	PodSelector labelSelector `json:"podSelector"`
}
