// Package kubernetes is bpm's Kubernetes provider: it runs instances as pods
// in a namespace of a cluster, chosen by kubeconfig and context, reachable
// only through the remote's gateway.
//
// Per remote it keeps the namespace (created when the user may), a
// ResourceQuota from [resources] and one gateway Deployment whose whole
// environment, WireGuard key included, is a Secret; the gateway goes with
// the remote's last instance, the namespace and quota stay. Per instance it applies
// a Secret (the env), a Deployment, a ClusterIP Service and a NetworkPolicy
// admitting only the gateway, all named bpm-<instance id>, labelled with
// their owner, and written by server-side apply with field manager "bpm", so
// a deploy is idempotent and a restarted manager finds everything by label.
// An instance whose deploy carries a bridge relay token also gets the
// bpm-bridge sidecar and its own Secret for the token (bridge.go): pods
// cannot share the gateway's unix socket, so the sidecar relays the
// instance's bridge to the gateway's relay Service.
package kubernetes
