package kubernetes

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bpm-project/bpm/internal/provider"
)

// Status reads the Deployment, its newest pod and that pod's warnings and
// turns them into one state with a message an operator can act on.
func (p *Provider) Status(ctx context.Context, ref provider.Ref) (provider.Status, error) {
	ns, name := p.locate(ref)
	w, err := p.getWorkload(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		// The Secret is applied first: alone, it is what a deploy cut
		// short (a killed manager) left. Reported, not hidden, so the
		// instance is terminated or re-deployed instead of leaking it.
		var sec corev1.Secret
		serr := p.api.secrets(ns).get(ctx, name, &sec)
		if serr == nil && sec.DeletionTimestamp == nil {
			return provider.Status{State: provider.StateFailed, Since: sec.CreationTimestamp.Time,
				Message: "deploy interrupted before its Deployment was created: deploy again or terminate"}, nil
		}
		return provider.Status{}, fmt.Errorf("kubernetes: instance %s: %w", ref.InstanceID, provider.ErrNotFound)
	}
	if err != nil {
		return provider.Status{}, wrapAPI("status "+name, err)
	}
	if w.deleted != nil {
		return provider.Status{State: provider.StateTerminating, Message: "being deleted", Since: w.deleted.Time}, nil
	}
	var pods corev1.PodList
	if err := p.api.pods(ns).list(ctx, metav1.ListOptions{LabelSelector: p.instanceSelector(ref.InstanceID)}, &pods); err != nil {
		return provider.Status{}, wrapAPI("status "+name, err)
	}
	pod := newestPod(pods.Items)
	if w.dep == nil && pod == nil {
		// A StatefulSet reports a refused pod (quota, admission) only as
		// an event.
		w.failure = p.failedCreate(ctx, ns, name)
	}
	if pod != nil && pod.Status.Phase == corev1.PodPending && pod.Spec.RuntimeClassName != nil && !sandboxReady(pod) {
		// A RuntimeClass whose handler the node's runtime lacks fails in
		// the kubelet, after admission, and shows only as an event on the
		// pod. Looked for only with a RuntimeClass, so every other status
		// poll costs no extra request.
		w.sandboxFailure = p.latestEvent(ctx, ns, pod.Name, "FailedCreatePodSandBox")
	}
	st := workloadStatus(w, pod)
	if st.State == provider.StateRunning {
		var svc corev1.Service
		err := p.api.services(ns).get(ctx, name, &svc)
		if err == nil && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone && len(svc.Spec.Ports) > 0 {
			st.Address = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
		}
	}
	return st, nil
}

// sandboxReady reports whether the kubelet has created the pod's sandbox,
// after which an earlier FailedCreatePodSandBox event is history.
func sandboxReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// newestPod is the pod that matters: during a restart the old one may still
// be terminating.
func newestPod(pods []corev1.Pod) *corev1.Pod {
	var best *corev1.Pod
	for i := range pods {
		pod := &pods[i]
		if pod.DeletionTimestamp != nil {
			continue
		}
		if best == nil || pod.CreationTimestamp.After(best.CreationTimestamp.Time) {
			best = pod
		}
	}
	return best
}

// deploymentStatus is the decision table, kept free of API calls so it can
// be tested on recorded objects.
func deploymentStatus(dep *appsv1.Deployment, pod *corev1.Pod) provider.Status {
	return workloadStatus(deploymentWorkload(dep), pod)
}

// workload is what Status needs of a Deployment or a StatefulSet.
type workload struct {
	dep     *appsv1.Deployment // nil for a StatefulSet
	created metav1.Time
	deleted *metav1.Time
	// failure is why the controller could not create the pod, if it
	// could not.
	failure string
	// sandboxFailure is why the kubelet could not create the pod's
	// sandbox, if it could not.
	sandboxFailure string
}

func deploymentWorkload(dep *appsv1.Deployment) workload {
	w := workload{dep: dep, created: dep.CreationTimestamp, deleted: dep.DeletionTimestamp}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			w.failure = c.Message
		}
	}
	return w
}

// getWorkload finds the instance's Deployment, or its StatefulSet when it
// has storage; NotFound when neither exists.
func (p *Provider) getWorkload(ctx context.Context, ns, name string) (workload, error) {
	dep := &appsv1.Deployment{}
	err := p.api.deployments(ns).get(ctx, name, dep)
	if err == nil {
		return deploymentWorkload(dep), nil
	}
	if !apierrors.IsNotFound(err) {
		return workload{}, err
	}
	var sts appsv1.StatefulSet
	if err := p.api.statefulSets(ns).get(ctx, name, &sts); err != nil {
		return workload{}, err
	}
	return workload{created: sts.CreationTimestamp, deleted: sts.DeletionTimestamp}, nil
}

// failedCreate is the latest FailedCreate event's message for the named
// controller, or "".
func (p *Provider) failedCreate(ctx context.Context, ns, name string) string {
	return p.latestEvent(ctx, ns, name, "FailedCreate")
}

// latestEvent is the message of the latest event with reason about the
// named object, or "".
func (p *Provider) latestEvent(ctx context.Context, ns, name, reason string) string {
	var evs corev1.EventList
	err := p.api.events(ns).list(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name + ",reason=" + reason}, &evs)
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	last := slices.MaxFunc(evs.Items, func(a, b corev1.Event) int {
		return a.LastTimestamp.Compare(b.LastTimestamp.Time)
	})
	return last.Message
}

// runtimeClassNotFound is how the API server's RuntimeClass admission
// plugin refuses a pod naming a RuntimeClass that does not exist:
// `pods "x-" is forbidden: pod rejected: RuntimeClass "kata" not found`.
var runtimeClassNotFound = regexp.MustCompile(`RuntimeClass "([^"]*)" not found`)

// createRetryGrace is how long a pod may fail to have its container
// created before its instance counts as failed.
const createRetryGrace = time.Minute

func workloadStatus(w workload, pod *corev1.Pod) provider.Status {
	st := provider.Status{State: provider.StateCreating, Since: w.created.Time}
	// The controller could not create the pod: quota or admission.
	if w.failure != "" {
		st.State = provider.StateFailed
		if m := runtimeClassNotFound.FindStringSubmatch(w.failure); m != nil {
			// The RuntimeClass admission plugin refuses the pod; the
			// controller retries for ever, and only a cluster change helps.
			st.Message = fmt.Sprintf("runtime class %q does not exist on the cluster: the manifest's isolation = \"vm\" needs it "+
				"(install Kata Containers, or set the remote's runtime_class to a RuntimeClass that exists): %s", m[1], w.failure)
		} else if strings.Contains(w.failure, "exceeded quota") {
			st.Message = "quota exceeded: " + w.failure
		} else {
			st.Message = "cannot create the pod: " + w.failure
		}
		return st
	}
	if pod == nil {
		st.Message = "waiting for the pod to be created"
		return st
	}
	st.Since = pod.CreationTimestamp.Time
	// The bridge sidecar is an init container: its image and config
	// problems keep the service from starting, so they count the same.
	for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		st.Restarts += int(cs.RestartCount)
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable":
				st.State, st.Message = provider.StateFailed, "image "+cs.Image+" cannot be pulled ("+w.Reason+"): "+w.Message
				return st
			case "CreateContainerConfigError", "CreateContainerError":
				// The kubelet retries these, and right after a node starts
				// they are often transient ("failed to sync secret cache").
				// Only one that outlasts createRetryGrace is a failure.
				if time.Since(pod.CreationTimestamp.Time) < createRetryGrace {
					st.State, st.Message = provider.StateCreating, "container not created yet ("+w.Reason+", the kubelet retries): "+w.Message
				} else {
					st.State, st.Message = provider.StateFailed, "container cannot be created ("+w.Reason+"): "+w.Message
				}
				return st
			case "CrashLoopBackOff":
				st.State = provider.StateDegraded
				st.Message = fmt.Sprintf("crash loop: the service exited %d times", cs.RestartCount)
				if t := cs.LastTerminationState.Terminated; t != nil {
					st.Message += fmt.Sprintf(", last with code %d (%s)", t.ExitCode, t.Reason)
				}
				return st
			}
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			// Not failed: capacity may appear (autoscaler), but never
			// reported as running.
			st.State, st.Message = provider.StateCreating, "unschedulable: "+c.Message
			return st
		}
	}
	if w.sandboxFailure != "" {
		rc := ""
		if pod.Spec.RuntimeClassName != nil {
			rc = *pod.Spec.RuntimeClassName
		}
		// Like CreateContainerError, the kubelet retries, so only a
		// failure that outlasts createRetryGrace is final.
		if time.Since(pod.CreationTimestamp.Time) < createRetryGrace {
			st.State, st.Message = provider.StateCreating, fmt.Sprintf("sandbox not created yet with runtime class %q (the kubelet retries): %s", rc, w.sandboxFailure)
		} else {
			st.State, st.Message = provider.StateFailed, fmt.Sprintf("the node cannot run runtime class %q (is its handler, such as Kata Containers, installed there?): %s", rc, w.sandboxFailure)
		}
		return st
	}
	if pod.Status.Phase == corev1.PodFailed {
		st.State, st.Message = provider.StateFailed, "pod failed: "+pod.Status.Message
		return st
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			st.State, st.Since = provider.StateRunning, c.LastTransitionTime.Time
			if st.Restarts > 0 {
				st.Message = fmt.Sprintf("restarted %d times", st.Restarts)
			}
			return st
		}
	}
	if pod.Status.Phase == corev1.PodRunning {
		st.Message = "started, waiting for the health check"
		if st.Restarts > 0 {
			st.State = provider.StateDegraded
			st.Message = fmt.Sprintf("not ready after %d restarts", st.Restarts)
		}
		return st
	}
	st.Message = "pod " + strings.ToLower(string(pod.Status.Phase))
	return st
}

// Terminate deletes every object labelled with the instance and waits until
// the pods are gone too, so "terminated" means nothing of it still runs.
// The remote's last instance takes the gateway with it.
func (p *Provider) Terminate(ctx context.Context, ref provider.Ref) error {
	ns, _ := p.locate(ref)
	sel := p.instanceSelector(ref.InstanceID)
	opts := metav1.ListOptions{LabelSelector: sel}
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	ignore := func(step string, err error) error {
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		return wrapAPI(step, err)
	}
	// Deployment first, so nothing recreates the pods while we wait.
	if err := ignore("delete deployments", p.api.deployments(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	if err := ignore("delete statefulsets", p.api.statefulSets(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	// Services have no deletecollection: delete one by one.
	var svcs corev1.ServiceList
	if err := p.api.services(ns).list(ctx, opts, &svcs); err != nil {
		return wrapAPI("list services", err)
	}
	for _, s := range svcs.Items {
		if err := ignore("delete service "+s.Name, p.api.services(ns).delete(ctx, s.Name, del)); err != nil {
			return err
		}
	}
	if err := ignore("delete networkpolicies", p.api.networkPolicies(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	if err := ignore("delete secrets", p.api.secrets(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	if err := ignore("delete volume claims", p.api.volumeClaims(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	// Pods go with their ReplicaSet in the background; delete them too so
	// the wait is bounded by their grace period, not the garbage collector.
	if err := ignore("delete pods", p.api.pods(ns).deleteCollection(ctx, del, opts)); err != nil {
		return err
	}
	for {
		left, err := p.remaining(ctx, ns, opts)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return p.removeGatewayIfLast(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes: terminate %s: still present: %s: %w", ref.InstanceID, strings.Join(left, ", "), ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

func (p *Provider) remaining(ctx context.Context, ns string, opts metav1.ListOptions) ([]string, error) {
	var left []string
	var deps appsv1.DeploymentList
	if err := p.api.deployments(ns).list(ctx, opts, &deps); err != nil {
		return nil, wrapAPI("list deployments", err)
	}
	for _, d := range deps.Items {
		left = append(left, "deployment/"+d.Name)
	}
	var stss appsv1.StatefulSetList
	if err := p.api.statefulSets(ns).list(ctx, opts, &stss); err != nil {
		return nil, wrapAPI("list statefulsets", err)
	}
	for _, s := range stss.Items {
		left = append(left, "statefulset/"+s.Name)
	}
	var rss appsv1.ReplicaSetList
	if err := p.api.replicaSets(ns).list(ctx, opts, &rss); err != nil {
		return nil, wrapAPI("list replicasets", err)
	}
	for _, r := range rss.Items {
		left = append(left, "replicaset/"+r.Name)
	}
	var pods corev1.PodList
	if err := p.api.pods(ns).list(ctx, opts, &pods); err != nil {
		return nil, wrapAPI("list pods", err)
	}
	for _, x := range pods.Items {
		left = append(left, "pod/"+x.Name)
	}
	var pvcs corev1.PersistentVolumeClaimList
	if err := p.api.volumeClaims(ns).list(ctx, opts, &pvcs); err != nil {
		return nil, wrapAPI("list volume claims", err)
	}
	for _, x := range pvcs.Items {
		left = append(left, "persistentvolumeclaim/"+x.Name)
	}
	return left, nil
}

// ListOwned lists this remote's instances by label: every Deployment, and
// every Secret without one (a deploy interrupted between the two), so
// reconcile sees partial instances too and nothing bpm made goes unlisted.
func (p *Provider) ListOwned(ctx context.Context) ([]provider.Owned, error) {
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy + "," + LabelRemote + "=" + p.remote + "," + LabelInstance}
	var deps appsv1.DeploymentList
	if err := p.api.deployments(p.ns()).list(ctx, sel, &deps); err != nil {
		return nil, wrapAPI("list instances", err)
	}
	var secs corev1.SecretList
	if err := p.api.secrets(p.ns()).list(ctx, sel, &secs); err != nil {
		return nil, wrapAPI("list instances", err)
	}
	byID := map[string]provider.State{}
	for _, s := range secs.Items {
		if s.DeletionTimestamp == nil {
			byID[s.Labels[LabelInstance]] = provider.StateFailed
		}
	}
	var stss appsv1.StatefulSetList
	if err := p.api.statefulSets(p.ns()).list(ctx, sel, &stss); err != nil {
		return nil, wrapAPI("list instances", err)
	}
	for _, s := range stss.Items {
		id := s.Labels[LabelInstance]
		switch {
		case s.DeletionTimestamp != nil:
			delete(byID, id)
		case s.Status.ReadyReplicas > 0:
			byID[id] = provider.StateRunning
		default:
			byID[id] = provider.StateCreating
		}
	}
	for _, d := range deps.Items {
		id := d.Labels[LabelInstance]
		switch {
		case d.DeletionTimestamp != nil:
			delete(byID, id)
		case d.Status.ReadyReplicas > 0:
			byID[id] = provider.StateRunning
		default:
			byID[id] = provider.StateCreating
		}
	}
	out := make([]provider.Owned, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, provider.Owned{InstanceID: id, Handle: p.handleFor(id), State: byID[id]})
	}
	return out, nil
}

// Logs copies the newest pod's output to w; with Follow it streams until ctx
// ends.
func (p *Provider) Logs(ctx context.Context, ref provider.Ref, opts provider.LogOptions, w io.Writer) error {
	ns, name := p.locate(ref)
	if _, err := p.getWorkload(ctx, ns, name); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("kubernetes: logs %s: %w", ref.InstanceID, provider.ErrNotFound)
		}
		return wrapAPI("logs "+name, err)
	}
	var pods corev1.PodList
	if err := p.api.pods(ns).list(ctx, metav1.ListOptions{LabelSelector: p.instanceSelector(ref.InstanceID)}, &pods); err != nil {
		return wrapAPI("logs "+name, err)
	}
	pod := newestPod(pods.Items)
	if pod == nil {
		return fmt.Errorf("kubernetes: logs %s: no pod yet", ref.InstanceID)
	}
	lo := &corev1.PodLogOptions{Container: "service", Follow: opts.Follow}
	if opts.Tail > 0 {
		n := int64(opts.Tail)
		lo.TailLines = &n
	}
	rc, err := p.api.pods(ns).logs(ctx, pod.Name, lo)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return wrapAPI("logs "+pod.Name, err)
	}
	defer rc.Close()
	// Line by line, so a follower sees each line as soon as it arrives.
	br := bufio.NewReader(rc)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("kubernetes: logs %s: %w", pod.Name, err)
		}
	}
}
