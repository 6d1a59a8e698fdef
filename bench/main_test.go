package bench

import (
	"os"
	"testing"

	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// TestMain lets the test binary be the supervisor (BPM_TEST_SUPERVISOR=1,
// invoked as "<binary> supervise --dir DIR") and the service
// (BPM_TEST_SERVICE=mode) of a local deployment, as the local provider's
// tests do: the benchmarks then run real processes without building a
// blueprint.
func TestMain(m *testing.M) {
	if os.Getenv("BPM_TEST_SUPERVISOR") == "1" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}
