//go:build !bpm_noremote

package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/testenv"
)

// TestIntegrationSSHCrash is issue #7's crash test for the native runtime:
// the manager is SIGKILLed mid-deploy (after the intent, the tunnel, and
// the provider's start before the handle is recorded); after its restart
// the instance either runs under its supervisor on the host or is failed
// with no process left there, and terminating leaves no process.
func TestIntegrationSSHCrash(t *testing.T) {
	s := testenv.Require(t, "ssh").SSH
	bin := buildCrashBinary(t)
	host := s.Hosts[2]
	const remote = "e2e-ssh-crash"
	t.Cleanup(func() { sshRun(t, s, host, "pkill -f '[.]bpm/gateway/"+remote+"' || true") })
	for _, c := range []struct {
		point string
		want  []string
	}{
		{"deploy/after-intent", []string{"failed"}},
		{"deploy/after-tunnel", []string{"failed"}},
		// Binaries and spec uploaded, the supervisor not started.
		{"ssh/after-upload", []string{"failed"}},
		// Started but not recorded: adopted if it runs by the restart,
		// otherwise stopped.
		{"deploy/after-provider", []string{"running", "failed"}},
	} {
		t.Run(c.point, func(t *testing.T) {
			e := newEnv(t)
			e.bin = bin
			e.useRemote(freePort(t), freeUDPPort(t), s.HubAddr, sshNativeRemote(remote, s, host))
			e.crashDeploy(c.point, "--remote", remote, "--package", e.pkg)

			e.startManager()
			list := e.list(true)
			if len(list) != 1 || !slices.Contains(c.want, list[0].State) {
				t.Fatalf("after restart bpm lists %+v, want the interrupted deploy in one of %v", list, c.want)
			}
			in := list[0]
			t.Logf("after the restart: %s %s", in.ID, in.State)
			// "[b]p-…" keeps the remote shell running pgrep from matching itself.
			supervisor := "pgrep -f '[.]bpm/instances/[b]" + in.ID[1:] + "' || true"
			switch in.State {
			case "running":
				if out := sshRun(t, s, host, supervisor); out == "" {
					t.Errorf("running instance %s has no supervisor on %s", in.ID, host)
				}
			case "failed":
				if !strings.Contains(in.Message, "interrupted") {
					t.Errorf("failed instance's message %q does not say the deploy was interrupted", in.Message)
				}
				if out := sshRun(t, s, host, supervisor); out != "" {
					t.Errorf("failed instance %s still has processes on %s: %s", in.ID, host, out)
				}
			}
			for _, in := range e.list(false) {
				e.mustRun("terminate", in.ID)
			}
			if out := sshRun(t, s, host, supervisor); out != "" {
				t.Errorf("after terminate, %s still has processes on %s: %s", in.ID, host, out)
			}
		})
	}
}
