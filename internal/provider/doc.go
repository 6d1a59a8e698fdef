// Package provider defines the one interface through which bpm deploys,
// inspects and terminates Blueprint instances on any kind of target, the
// registry that maps a remote's type name to its implementation, and the
// sentinel errors callers test with errors.Is.
//
// The core interface is deliberately small; extra abilities (logs, listing
// owned resources for reconcile) are single-method optional interfaces found
// by type assertion, so a provider that cannot do something simply does not
// implement it and the CLI reports the capability as absent.
package provider
