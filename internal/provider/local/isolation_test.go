package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// TestDeployRefusesVMIsolation: a local instance is a process on this
// machine, so a manifest asking for a VM is refused, naming the field, and
// nothing is started or written for the instance.
func TestDeployRefusesVMIsolation(t *testing.T) {
	dataDir := t.TempDir()
	p := newProvider(t, dataDir, nil)
	pkg := testPackage(t, "serve")
	pkg.Manifest.Isolation = blueprint.IsolationVM
	req := request(pkg)
	_, err := p.Deploy(context.Background(), req)
	if !errors.Is(err, provider.ErrUnsupported) || !strings.Contains(err.Error(), `isolation = "vm"`) {
		t.Fatalf("Deploy = %v, want ErrUnsupported naming isolation", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, req.InstanceID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the instance's directory exists after a refused deploy: %v", err)
	}
}
