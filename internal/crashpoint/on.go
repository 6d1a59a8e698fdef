//go:build bpm_crashpoints

package crashpoint

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether this build can crash at a point.
const Enabled = true

// EnvVar names the point at which the process kills itself.
const EnvVar = "BPM_CRASHPOINT"

// Read once: Hit is on hot paths of tests that deploy many instances, and the
// point is chosen when the process starts, never changed while it runs.
var armed = sync.OnceValue(func() string { return os.Getenv(EnvVar) })

// Hit SIGKILLs this process when name is the point BPM_CRASHPOINT names.
func Hit(name string) {
	if p := armed(); p == "" || p != name {
		return
	}
	// SIGKILL rather than os.Exit: no deferred call, no atexit, no flush
	// of buffered writes may run, exactly as when the kernel kills us.
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// Never run past the point, however late the kernel acts. A sleep
	// rather than select{}: the runtime may report an empty select as a
	// deadlock and exit with its own status first.
	for {
		time.Sleep(time.Hour)
	}
}
