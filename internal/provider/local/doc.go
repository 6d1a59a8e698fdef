// Package local is the default provider: it runs a blueprint as a native
// process on this machine, the backwards-compatible path every remote
// feature must leave unchanged.
//
// Each instance lives in <DataDir>/instances/<instance id>/ and runs under
// its own supervisor process (package supervisor), started detached in a new
// session. The manager is therefore not the service's parent: a manager
// crash leaves the service running, and a new manager finds it again through
// ListOwned and the supervisor's pid file (pid and /proc start time, so a
// reused pid is never mistaken for it) instead of starting a duplicate.
//
// Layout of an instance directory:
//
//	instance.json    what Status needs (address, health check, grace); no secrets
//	spec.json        the supervisor's spec, 0600: it holds the service's env
//	supervisor.pid, supervisor.lock, status.json   kept by the supervisor
//	supervisor.log   the supervisor's own diagnostics
//	logs/instance.log[.N]   the service's stdout and stderr, rotated
//	data/            the service's DATA_DIR
//
// Terminate stops the service but keeps the directory, so its logs and data
// survive for inspection and a redeploy of the same id finds its data again;
// removing it is the operator's (or a later purge command's) decision.
// Deploying a terminated instance id again starts it afresh in the same
// directory; the manager never reuses ids, so that only happens on a retry.
package local
