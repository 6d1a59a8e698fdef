package supervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
)

func TestObserve(t *testing.T) {
	zero, one := 0, 1
	cases := []struct {
		name    string
		st      Status
		alive   bool
		readErr error
		want    provider.State
		msg     string
	}{
		{"running", Status{State: StateRunning}, true, nil, provider.StateRunning, ""},
		{"starting", Status{State: StateStarting}, true, nil, provider.StateCreating, ""},
		{"starting after restarts", Status{State: StateStarting, Restarts: 2, LastError: "exit 1"}, true, nil, provider.StateDegraded, "restarting (restart 2) after: exit 1"},
		{"backoff", Status{State: StateBackoff, Restarts: 1, LastError: "exit 1"}, true, nil, provider.StateDegraded, "restarting (restart 1)"},
		{"stopping", Status{State: StateStopping}, true, nil, provider.StateTerminating, "stopping"},
		{"stopped", Status{State: StateStopped}, false, nil, provider.StateTerminated, "stopped"},
		{"clean exit", Status{State: StateExited, LastExitCode: &zero}, false, nil, provider.StateTerminated, "code 0"},
		{"failed exit", Status{State: StateExited, LastExitCode: &one, LastError: "exit status 1"}, false, nil, provider.StateFailed, "service exited: exit status 1"},
		{"could not start", Status{State: StateFailed, LastError: "no such file"}, true, nil, provider.StateFailed, "could not start: no such file"},
		{"supervisor gone, no status", Status{}, false, errors.New("missing"), provider.StateFailed, "left no status"},
		{"supervisor gone while running", Status{State: StateRunning}, false, nil, provider.StateFailed, "last state running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, msg := Observe(c.st, c.alive, c.readErr)
			if got != c.want || !strings.Contains(msg, c.msg) {
				t.Fatalf("Observe = %s %q, want %s containing %q", got, msg, c.want, c.msg)
			}
		})
	}
}
