package kubernetes

import (
	"context"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/apply"
	"k8s.io/client-go/util/flowcontrol"
)

// client is the slice of the Kubernetes API bpm uses: a dozen verbs on ten
// resources of three API groups, over one rest.RESTClient per group.
//
// Why not the clientset (k8s.io/client-go/kubernetes) and its apply
// configurations: either one links k8s.io/client-go/kubernetes/scheme, and
// with it every API group of k8s.io/api, some fifty packages with their
// init functions and registrations. That made up most of the bpm binary's
// size and, since init touches pages all over it, most of an idle manager's
// memory, for types bpm never sends or reads. This client speaks to the API
// server exactly as the clientset does (the requests are pinned by
// TestRequests): server-side apply with JSON bodies (objects.go), protobuf
// for the rest, and answers decoded into the k8s.io/api types of only core/v1
// and apps/v1.
type client struct {
	core, apps, networking *rest.RESTClient
	params                 runtime.ParameterCodec
}

var networkingV1 = schema.GroupVersion{Group: "networking.k8s.io", Version: "v1"}

// newClient builds the clients the way the clientset's NewForConfig does:
// one HTTP client (so one connection pool, with the kubeconfig's auth and
// exec plugins) and one rate limiter shared by all groups.
func newClient(rc *rest.Config) (*client, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := appsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// NetworkPolicies are only applied and deleted: their group needs the
	// option types (for parameters and DeleteOptions), not its own.
	metav1.AddToGroupVersion(scheme, networkingV1)
	// Status, which error answers carry.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)

	cfg := *rc
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(&cfg)
	if err != nil {
		return nil, err
	}
	forGroup := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := cfg
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(scheme, codecs).WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		return rest.RESTClientForConfigAndClient(&c, hc)
	}
	out := &client{params: runtime.NewParameterCodec(scheme)}
	if out.core, err = forGroup(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if out.apps, err = forGroup(appsv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if out.networking, err = forGroup(networkingV1, "/apis"); err != nil {
		return nil, err
	}
	return out, nil
}

// collection is one resource type, in one namespace unless cluster-scoped.
type collection struct {
	rc     *rest.RESTClient
	params runtime.ParameterCodec
	name   string // plural, as in the URL
	ns     string // "" for a cluster-scoped resource
}

func (c *client) namespaces() collection { return collection{c.core, c.params, "namespaces", ""} }
func (c *client) nodes() collection      { return collection{c.core, c.params, "nodes", ""} }
func (c *client) resourceQuotas(ns string) collection {
	return collection{c.core, c.params, "resourcequotas", ns}
}
func (c *client) secrets(ns string) collection  { return collection{c.core, c.params, "secrets", ns} }
func (c *client) services(ns string) collection { return collection{c.core, c.params, "services", ns} }
func (c *client) pods(ns string) collection     { return collection{c.core, c.params, "pods", ns} }
func (c *client) events(ns string) collection   { return collection{c.core, c.params, "events", ns} }
func (c *client) volumeClaims(ns string) collection {
	return collection{c.core, c.params, "persistentvolumeclaims", ns}
}
func (c *client) deployments(ns string) collection {
	return collection{c.apps, c.params, "deployments", ns}
}
func (c *client) statefulSets(ns string) collection {
	return collection{c.apps, c.params, "statefulsets", ns}
}
func (c *client) replicaSets(ns string) collection {
	return collection{c.apps, c.params, "replicasets", ns}
}
func (c *client) networkPolicies(ns string) collection {
	return collection{c.networking, c.params, "networkpolicies", ns}
}

// request starts a request on the resource. Protobuf, as the clientset
// uses for built-in types: smaller and faster to decode than JSON.
func (r collection) request(req *rest.Request) *rest.Request {
	return req.UseProtobufAsDefault().NamespaceIfScoped(r.ns, r.ns != "").Resource(r.name)
}

// get reads the named object into out.
func (r collection) get(ctx context.Context, name string, out runtime.Object) error {
	return r.request(r.rc.Get()).Name(name).VersionedParams(&metav1.GetOptions{}, r.params).Do(ctx).Into(out)
}

// list reads the objects matching opts into out, a list type.
func (r collection) list(ctx context.Context, opts metav1.ListOptions, out runtime.Object) error {
	return r.request(r.rc.Get()).VersionedParams(&opts, r.params).Timeout(timeout(opts)).Do(ctx).Into(out)
}

// apply sends obj as a server-side apply patch owned by FieldManager.
// Force: bpm is the authority on the fields it sets; a conflict means
// someone edited them by hand, and the deploy should win.
func (r collection) apply(ctx context.Context, obj *object) error {
	req, err := apply.NewRequest(r.rc, obj)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	return r.request(req).Name(obj.Metadata.Name).VersionedParams(&opts, r.params).Do(ctx).Error()
}

// applyInto is apply, decoding the object the API server answers with
// into out (for fields it fills in, such as a Service's cluster IP).
func (r collection) applyInto(ctx context.Context, obj *object, out runtime.Object) error {
	req, err := apply.NewRequest(r.rc, obj)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	return r.request(req).Name(obj.Metadata.Name).VersionedParams(&opts, r.params).Do(ctx).Into(out)
}

// delete deletes the named object.
func (r collection) delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.request(r.rc.Delete()).Name(name).Body(&opts).Do(ctx).Error()
}

// deleteCollection deletes every object matching listOpts.
func (r collection) deleteCollection(ctx context.Context, opts metav1.DeleteOptions, listOpts metav1.ListOptions) error {
	return r.request(r.rc.Delete()).VersionedParams(&listOpts, r.params).Timeout(timeout(listOpts)).
		Body(&opts).Do(ctx).Error()
}

// logs streams a pod's log. Plain text, so no protobuf preference.
func (r collection) logs(ctx context.Context, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return r.rc.Get().Namespace(r.ns).Name(pod).Resource("pods").SubResource("log").
		VersionedParams(opts, r.params).Stream(ctx)
}

func timeout(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}
