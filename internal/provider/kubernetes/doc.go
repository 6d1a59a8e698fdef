// Package kubernetes is bpm's Kubernetes provider: it runs instances as pods
// in a namespace of a cluster, reachable only through the remote's gateway.
//
// So far it holds the config schema only, so [remote.NAME] sections of type
// "kubernetes" load and validate; building the provider returns
// provider.ErrNotAvailableYet until the implementation lands.
package kubernetes
