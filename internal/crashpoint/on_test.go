//go:build bpm_crashpoints

package crashpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// helperEnv marks the re-executed test binary as the process to crash.
const helperEnv = "BPM_CRASHPOINT_HELPER"

// TestHelperProcess is not a test on its own: the tests below run this
// binary again with only it selected, and it walks past two points.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process, run by the crash tests")
	}
	Hit("test/first")
	fmt.Println("passed test/first")
	Hit("test/second")
	fmt.Println("passed test/second")
	os.Exit(0)
}

// run re-executes the test binary as the helper with BPM_CRASHPOINT=point.
func run(t *testing.T, point string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", EnvVar+"="+point)
	out, err := cmd.Output()
	return string(out), err
}

func TestHitKillsAtTheNamedPoint(t *testing.T) {
	if !Enabled {
		t.Fatal("Enabled is false in a bpm_crashpoints build")
	}
	out, err := run(t, "test/second")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper did not die: err %v, output %q", err, out)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL", ee)
	}
	// Exactly at the point: the step before it ran, the one after did not.
	if !strings.Contains(out, "passed test/first") || strings.Contains(out, "passed test/second") {
		t.Fatalf("helper output %q, want it to stop between test/first and test/second", out)
	}
}

func TestHitPassesOtherPoints(t *testing.T) {
	for _, point := range []string{"", "test/none", "test/first/"} {
		out, err := run(t, point)
		if err != nil {
			t.Fatalf("BPM_CRASHPOINT=%q: helper failed: %v, output %q", point, err, out)
		}
		if !strings.Contains(out, "passed test/second") {
			t.Fatalf("BPM_CRASHPOINT=%q: helper output %q, want both points passed", point, out)
		}
	}
}
