//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIntegrationRemoteUnreachable: a configured remote whose cluster
// cannot be reached (here: its kubeconfig does not exist) is refused with
// the "unavailable" exit code, records nothing, and leaves the local
// default untouched.
func TestIntegrationRemoteUnreachable(t *testing.T) {
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
	if code != 7 || !strings.Contains(errs, "kubeconfig") {
		t.Fatalf("deploy to an unreachable kubernetes remote: exit %d, stderr %q; want exit 7 naming the kubeconfig", code, errs)
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
