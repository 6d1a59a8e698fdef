package supervisor

import (
	"fmt"

	"github.com/bpm-project/bpm/internal/provider"
)

// Observe maps what a supervisor recorded to the provider state of its
// instance, for every provider that runs instances under `bpm supervise`
// (local, and ssh on a remote host). alive says whether the supervisor
// process still runs; readErr is the error reading status.json. A running
// service comes back as StateRunning: the health check is the caller's,
// since where it can be dialled from differs by provider.
func Observe(st Status, alive bool, readErr error) (provider.State, string) {
	if !alive || st.State.Final() {
		switch {
		case st.State == StateStopped:
			return provider.StateTerminated, "stopped"
		case st.State == StateExited && st.LastExitCode != nil && *st.LastExitCode == 0:
			return provider.StateTerminated, "service exited with code 0 and was not restarted"
		case st.State == StateExited:
			return provider.StateFailed, "service exited: " + st.LastError
		case st.State == StateFailed:
			return provider.StateFailed, "service could not start: " + st.LastError
		case readErr != nil:
			return provider.StateFailed, "supervisor is not running and left no status"
		default:
			return provider.StateFailed, fmt.Sprintf("supervisor is not running (last state %s)", st.State)
		}
	}
	switch st.State {
	case StateRunning:
		return provider.StateRunning, ""
	case StateBackoff:
		return provider.StateDegraded, fmt.Sprintf("restarting (restart %d) after: %s", st.Restarts, st.LastError)
	case StateStopping:
		return provider.StateTerminating, "stopping"
	}
	// Starting, or no status written yet.
	if st.Restarts > 0 {
		return provider.StateDegraded, fmt.Sprintf("restarting (restart %d) after: %s", st.Restarts, st.LastError)
	}
	return provider.StateCreating, ""
}
