package cost

import (
	"os"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
)

// TestMain registers the kubernetes config type so FuzzRateCard decodes
// real [remote.X.pricing] tables (registration is explicit, as in the CLI).
func TestMain(m *testing.M) {
	provider.Register(kubernetes.Info())
	os.Exit(m.Run())
}
