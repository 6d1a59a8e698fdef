//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIntegrationRemoteNotAvailableYet: a configured remote whose provider
// lands later is refused with its own exit code, records nothing, and
// leaves the local default untouched.
func TestIntegrationRemoteNotAvailableYet(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(e.root, "cfg", "config.toml")
	b, err := os.ReadFile(cfg)
	must(t, err)
	b = append(b, []byte(`
[remote.aws]
type = "kubernetes"
kubeconfig = "~/.kube/eks-config"
context = "eks-us-west-2"
namespace = "blueprint-production"
`)...)
	must(t, os.WriteFile(cfg, b, 0o600))
	e.startManager()
	_, errs, code := e.run("deploy", "--remote", "aws", "--package", e.pkg)
	if code != 4 || !strings.Contains(errs, "not available yet") {
		t.Fatalf("deploy to a kubernetes remote: exit %d, stderr %q; want exit 4 and a clear message", code, errs)
	}
	if all := e.list(true); len(all) != 0 {
		t.Fatalf("a refused deploy left state: %+v", all)
	}
	// The local default still works beside it, and its logs stream.
	var inst instance
	must(t, json.Unmarshal([]byte(e.mustRun("deploy", "--package", e.pkg, "-o", "json")), &inst))
	e.waitState(inst.ID, "running")
	logs := e.mustRun("logs", "--tail", "50", inst.ID)
	if !strings.Contains(logs, "listening") {
		t.Fatalf("logs lack the echo service's output: %q", logs)
	}
}
