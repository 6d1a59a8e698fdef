//go:build !bpm_crashpoints

package crashpoint

// Enabled reports whether this build can crash at a point; false here.
const Enabled = false

// Hit does nothing in a build without bpm_crashpoints.
func Hit(name string) {}
