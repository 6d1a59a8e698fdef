// Package supervisor is the small per-instance process that runs one local
// blueprint service, in the manner of containerd's shim or conmon.
//
// The local provider starts `bpm supervise --dir DIR` detached (its own
// session) and the supervisor, not the manager, is the service's parent. So a
// manager crash — even SIGKILL — leaves the service running, and a new
// manager re-attaches through the files the supervisor keeps in DIR instead
// of starting a duplicate:
//
//	spec.json        what to run (0600: the env may hold secrets); written by the provider
//	supervisor.pid   "PID STARTTIME": the supervisor's pid and /proc start time, so a
//	                 reader can tell the supervisor from an unrelated process that
//	                 reused its pid
//	supervisor.lock  flock held for the supervisor's life: at most one per DIR
//	status.json      the current state, rewritten atomically on every change
//	logs/instance.log, instance.log.1, …  the service's stdout+stderr, size-capped and rotated
//
// The supervisor restarts a failed service with exponential backoff, and on
// SIGTERM/SIGINT stops it by signalling its whole process group (SIGTERM, then
// SIGKILL after the grace period).
package supervisor
