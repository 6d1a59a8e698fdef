//go:build !bpm_crashpoints

package crashpoint

import "testing"

// A release build ignores BPM_CRASHPOINT: setting it must never turn an
// operator's binary into one that kills itself.
func TestHitIsInertWithoutTag(t *testing.T) {
	t.Setenv("BPM_CRASHPOINT", "test/point")
	Hit("test/point") // still alive below
	if Enabled {
		t.Fatal("Enabled is true in a build without bpm_crashpoints")
	}
}
