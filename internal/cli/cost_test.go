package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployCostPolicy: a deploy that costs money is shown its estimate,
// refused without a terminal unless --yes or the remote's policy allows,
// and never asks when it costs nothing. No manager runs, so a deploy that
// gets past the policy exits "manager not running".
func TestDeployCostPolicy(t *testing.T) {
	specWorkspace(t)
	cfgDir := os.Getenv("BPM_CONFIG_DIR")
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(extra), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("[cost.local]\ninstance_hour = 0.5\n")
	_, errs, code := runCLI(t, "deploy", "--package", "my-blueprint")
	if code != ExitRefused || !strings.Contains(errs, "pass --yes") || !strings.Contains(errs, "$365.00/month") {
		t.Fatalf("unconfirmed deploy: exit %d, stderr %q; want 8 naming --yes and the price", code, errs)
	}
	if _, errs, code = runCLI(t, "deploy", "--yes", "--package", "my-blueprint"); code != ExitNoManager || !strings.Contains(errs, "estimate: $0.5000/hour") {
		t.Fatalf("deploy --yes: exit %d, stderr %q", code, errs)
	}
	write("[cost.local]\ninstance_hour = 0.5\nconfirm = false\n")
	if _, errs, code = runCLI(t, "deploy", "--package", "my-blueprint"); code != ExitNoManager {
		t.Fatalf("confirm = false: exit %d, stderr %q", code, errs)
	}
	write("")
	if _, errs, code = runCLI(t, "deploy", "--package", "my-blueprint"); code != ExitNoManager || strings.Contains(errs, "estimate") {
		t.Fatalf("free deploy: exit %d, stderr %q", code, errs)
	}
	if _, errs, code = runCLI(t, "set-alert", "--monthly-limit", "10", "--thresholds", "0"); code != ExitUsage {
		t.Fatalf("bad threshold: exit %d, stderr %q", code, errs)
	}
}
