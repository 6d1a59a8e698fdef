package ssh

import (
	"os"
	"testing"

	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// The test binary doubles as both programs uploaded to the hosts: run as
// `X supervise --dir DIR` it is bpm's supervisor (the same supervisor.Main
// that `bpm supervise` calls), and run with BPM_TEST_SERVICE set it is
// testservice's HTTP server. Building cmd/bpm instead would tie these tests
// to every other package of the module compiling.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}
