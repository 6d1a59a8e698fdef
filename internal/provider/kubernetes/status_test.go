package kubernetes

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bpm-project/bpm/internal/provider"
)

func waiting(reason, msg string, restarts int32) *corev1.Pod {
	return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Image: "img", RestartCount: restarts,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
	}}}}
}

// fresh marks a pod as just created.
func fresh(p *corev1.Pod) *corev1.Pod {
	p.CreationTimestamp = metav1.Now()
	return p
}

func TestDeploymentStatus(t *testing.T) {
	quota := &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
		Message: `pods "x" is forbidden: exceeded quota: bpm, requested: limits.cpu=1`,
	}}}}
	ready := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	unsched := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient cpu."}}}}
	started := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	// What the RuntimeClass admission plugin made of a pod naming a
	// missing class, as recorded from the test cluster (Kubernetes 1.34).
	noRuntimeClass := &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
		Message: `pods "rcprobe-x-6bb9987659-" is forbidden: pod rejected: RuntimeClass "kata" not found`,
	}}}}
	for _, tc := range []struct {
		name  string
		dep   *appsv1.Deployment
		pod   *corev1.Pod
		state provider.State
		msg   string
	}{
		{"no pod yet", &appsv1.Deployment{}, nil, provider.StateCreating, "waiting for the pod"},
		{"quota", quota, nil, provider.StateFailed, "quota exceeded"},
		{"no runtime class", noRuntimeClass, nil, provider.StateFailed, `runtime class "kata" does not exist on the cluster: the manifest's isolation = "vm" needs it`},
		{"pull backoff", &appsv1.Deployment{}, waiting("ImagePullBackOff", "back-off", 0), provider.StateFailed, "cannot be pulled (ImagePullBackOff)"},
		{"never pull", &appsv1.Deployment{}, waiting("ErrImageNeverPull", "not present", 0), provider.StateFailed, "ErrImageNeverPull"},
		{"config error, persistent", &appsv1.Deployment{}, waiting("CreateContainerConfigError", `secret "x" not found`, 0), provider.StateFailed, "cannot be created (CreateContainerConfigError)"},
		{"config error, fresh pod", &appsv1.Deployment{}, fresh(waiting("CreateContainerConfigError", "failed to sync secret cache", 0)), provider.StateCreating, "the kubelet retries"},
		{"crash loop", &appsv1.Deployment{}, waiting("CrashLoopBackOff", "", 4), provider.StateDegraded, "crash loop: the service exited 4 times"},
		{"unschedulable", &appsv1.Deployment{}, unsched, provider.StateCreating, "unschedulable: 0/1 nodes"},
		{"started not ready", &appsv1.Deployment{}, started, provider.StateCreating, "waiting for the health check"},
		{"ready", &appsv1.Deployment{}, ready, provider.StateRunning, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := deploymentStatus(tc.dep, tc.pod)
			if st.State != tc.state || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("status = %s %q, want %s containing %q", st.State, st.Message, tc.state, tc.msg)
			}
		})
	}
}

// A StatefulSet's refused pod is known only from its FailedCreate event.
func TestStatefulSetStatus(t *testing.T) {
	for _, tc := range []struct {
		name, failure string
		state         provider.State
		msg           string
	}{
		{"quota", `pods "x-0" is forbidden: exceeded quota: bpm`, provider.StateFailed, "quota exceeded: "},
		{"admission", `pods "x-0" is forbidden: violates PodSecurity`, provider.StateFailed, "cannot create the pod: "},
		{"no runtime class", `create Pod x-0 in StatefulSet x failed error: pods "x-0" is forbidden: pod rejected: RuntimeClass "kata-fc" not found`,
			provider.StateFailed, `runtime class "kata-fc" does not exist on the cluster`},
		{"nothing yet", "", provider.StateCreating, "waiting for the pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := workloadStatus(workload{failure: tc.failure}, nil)
			if st.State != tc.state || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("status = %s %q, want %s containing %q", st.State, st.Message, tc.state, tc.msg)
			}
		})
	}
}

// A RuntimeClass that exists but whose handler the node lacks fails in the
// kubelet: the pod stays pending, with FailedCreatePodSandBox events.
func TestSandboxFailureStatus(t *testing.T) {
	const msg = `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for "kata" is configured`
	rc := "kata"
	pending := func(age time.Duration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Now().Add(-age))},
			Spec: corev1.PodSpec{RuntimeClassName: &rc},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}}
	}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		state provider.State
		want  string
	}{
		{"fresh", pending(time.Second), provider.StateCreating, `sandbox not created yet with runtime class "kata" (the kubelet retries): ` + msg},
		{"persistent", pending(2 * createRetryGrace), provider.StateFailed, `the node cannot run runtime class "kata"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := workloadStatus(workload{sandboxFailure: msg}, tc.pod)
			if st.State != tc.state || !strings.Contains(st.Message, tc.want) {
				t.Errorf("status = %s %q, want %s containing %q", st.State, st.Message, tc.state, tc.want)
			}
		})
	}
	ready := pending(2 * createRetryGrace)
	ready.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue}}
	if !sandboxReady(ready) || sandboxReady(pending(0)) {
		t.Error("sandboxReady does not follow PodReadyToStartContainers")
	}
}
