//go:build !bpm_noremote

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/testenv"
)

// crashRemote is the docker remote the crash tests deploy to; a name of its
// own so no other test's containers, gateway or network are counted.
const crashRemote = "e2e-crash"

// dockerCrashPoints are the steps of `bpm deploy --remote <docker>` at which
// the manager is killed, in the order a deploy passes them, with what the
// next manager must make of the interrupted instance. Before the container
// runs, nothing of the deploy may survive (the client was told it failed,
// and a created container nobody starts would sit there forever); once it
// runs, the next manager adopts it.
var dockerCrashPoints = []struct {
	point string
	want  string // the instance's state after the restart
}{
	{"deploy/after-intent", "failed"},
	{"deploy/after-tunnel", "failed"},
	{"docker/after-create", "failed"},
	{"docker/after-start", "running"},
	{"deploy/after-provider", "running"},
}

// buildCrashBinary builds bpm with live crash points (internal/crashpoint),
// static like the release binary because the docker provider packs the
// manager's own binary into the gateway image.
func buildCrashBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bpm-crash")
	cmd := exec.Command("go", "build", "-tags", "bpm_crashpoints", "-o", bin, "github.com/bpm-project/bpm/cmd/bpm")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build bpm with crash points: %v\n%s", err, out)
	}
	return bin
}

// TestIntegrationDockerCrash is issue #6's crash test: the manager is
// SIGKILLed at each step of a docker deploy, and after its restart every
// instance bpm lists either runs with its container or is failed with none,
// every container bpm's labels claim for the remote belongs to a live
// instance, and terminating what is left leaves the engine clean.
func TestIntegrationDockerCrash(t *testing.T) {
	d := testenv.Require(t, "docker").Docker
	bin := buildCrashBinary(t)
	pkg := filepath.Join(repoRoot(t), "examples", "echo")
	archive := filepath.Join(t.TempDir(), "echo.tar")
	if out, err := exec.Command(bpmBin, "package", "image", pkg, "-o", archive).CombinedOutput(); err != nil {
		t.Fatalf("bpm package image: %v\n%s", err, out)
	}
	for _, c := range dockerCrashPoints {
		t.Run(c.point, func(t *testing.T) {
			crashDockerDeploy(t, d, bin, pkg, archive, c.point, c.want)
		})
	}
	t.Run("orphan", func(t *testing.T) { crashDockerOrphan(t, d, bin, pkg, archive) })
	for _, point := range []string{"terminate/after-mark", "terminate/after-provider"} {
		t.Run(point, func(t *testing.T) { crashDockerTerminate(t, d, bin, pkg, archive, point) })
	}
}

// crashDockerTerminate: the manager is SIGKILLed in the middle of a
// terminate (after it recorded terminating; after the container went but
// before the row did). The next manager finishes it: the instance is
// terminated, nothing of the remote is left on the engine, and the
// service's API keys are revoked, as after a terminate that ran through.
func crashDockerTerminate(t *testing.T, d testenv.Docker, bin, pkg, archive, point string) {
	e := newCrashEnv(t, d, bin, archive)
	e.startManager()
	var inst instance
	must(t, json.Unmarshal([]byte(e.mustRun("deploy", "--remote", crashRemote, "--package", pkg, "-o", "json")), &inst))
	e.waitState(inst.ID, "running")
	e.mustRun("auth", "key", "create", "--service-id", fmt.Sprint(inst.ServiceID), "--save", filepath.Join(t.TempDir(), "key"))
	e.stopManager(syscall.SIGTERM)

	plain := e.vars
	e.vars = append(slices.Clip(plain), "BPM_CRASHPOINT="+point)
	e.startManager()
	e.vars = plain
	if _, _, code := e.run("terminate", inst.ID); code == 0 {
		t.Fatalf("terminate succeeded although the manager was to die at %s", point)
	}
	e.waitKilled(point)

	e.startManager() // answers only after its first reconcile
	all := e.list(true)
	if len(all) != 1 || all[0].State != "terminated" {
		t.Fatalf("after restart: %+v, want the instance terminated", all)
	}
	if got := e.mustRun("status", "--instance", inst.ID); !strings.Contains(got, "finished a terminate") {
		t.Errorf("status does not say the terminate was finished:\n%s", got)
	}
	if objs := remoteObjects(t, d, crashRemote); len(objs) > 0 {
		t.Errorf("after the finished terminate the engine still holds %v", objs)
	}
	if keys := e.mustRun("auth", "key", "list", "--service-id", fmt.Sprint(inst.ServiceID)); strings.Contains(keys, "active") {
		t.Errorf("the service's API key is still active after its terminate was finished:\n%s", keys)
	}
}

// crashDockerOrphan: a container with bpm's labels for the remote that state
// has no row for (state restored from a backup, a row lost with a disk) is
// removed by the next manager, while the instance state knows survives.
func crashDockerOrphan(t *testing.T, d testenv.Docker, bin, pkg, archive string) {
	e := newCrashEnv(t, d, bin, archive)
	e.startManager()
	var inst instance
	must(t, json.Unmarshal([]byte(e.mustRun("deploy", "--remote", crashRemote, "--package", pkg, "-o", "json")), &inst))
	e.waitState(inst.ID, "running")
	e.stopManager(syscall.SIGKILL)

	const orphan = "bp-e2eorphan"
	if out, err := dockerTLS(t, d, "run", "-d", "--name", orphan, "--network", "bpm-"+crashRemote,
		"--label", "bpm.instance="+orphan, "--label", "bpm.remote="+crashRemote, "--label", "bpm.role=instance", d.Image); err != nil {
		t.Fatalf("plant an orphan container: %v: %s", err, out)
	}
	e.startManager()
	if _, err := dockerTLS(t, d, "inspect", orphan); err == nil {
		t.Error("the orphan container survived the manager's restart")
	}
	e.waitState(inst.ID, "running")
	checkAccounted(t, e, d)

	e.mustRun("terminate", inst.ID)
	if objs := remoteObjects(t, d, crashRemote); len(objs) > 0 {
		t.Errorf("after terminating everything, the engine still holds %v", objs)
	}
}

// newCrashEnv is a bpm installation running bin with crashRemote as a
// docker remote on the TLS engine (the config TestIntegrationDockerEndToEnd
// uses), on an engine cleared of anything an earlier run left for it.
func newCrashEnv(t *testing.T, d testenv.Docker, bin, archive string) *env {
	t.Helper()
	// Registered before newEnv so it runs after the env's own cleanup
	// (which terminates through bpm): it only catches what a failed run
	// left behind, and the assertions never rely on it.
	removeRemoteObjects(t, d, crashRemote)
	t.Cleanup(func() { removeRemoteObjects(t, d, crashRemote) })

	e := newEnv(t)
	e.bin = bin
	e.useRemote(freePort(t), freeUDPPort(t), d.BridgeGateway, dockerTLSRemote(crashRemote, d, archive))
	return e
}

func crashDockerDeploy(t *testing.T, d testenv.Docker, bin, pkg, archive, point, want string) {
	e := newCrashEnv(t, d, bin, archive)
	e.crashDeploy(point, "--remote", crashRemote, "--package", pkg)

	// The API answers only after the initial reconcile, so what follows
	// sees its outcome.
	e.startManager()
	list := e.list(true)
	if len(list) != 1 {
		t.Fatalf("after restart bpm lists %+v, want the one interrupted deploy", list)
	}
	id := list[0].ID
	switch want {
	case "running":
		e.waitState(id, "running")
		if got := e.mustRun("status", "--instance", id); !strings.Contains(got, "adopted") {
			t.Errorf("status of an adopted instance does not say so:\n%s", got)
		}
	case "failed":
		if got := list[0]; got.State != "failed" || !strings.Contains(got.Message, "interrupted") {
			t.Errorf("instance after restart: %+v, want failed with a message saying the deploy was interrupted", got)
		}
		// Nothing of the deploy is left: with no instance on the engine,
		// the remote's gateway, network and volume go as well.
		if objs := remoteObjects(t, d, crashRemote); len(objs) > 0 {
			t.Errorf("after reconcile of a deploy that never ran, the engine still holds %v", objs)
		}
	}
	checkAccounted(t, e, d)

	for _, in := range e.list(false) {
		e.mustRun("terminate", in.ID)
	}
	if objs := remoteObjects(t, d, crashRemote); len(objs) > 0 {
		t.Errorf("after terminating everything, the engine still holds %v", objs)
	}
}

// crashDeploy starts e's manager armed to SIGKILL itself at point, runs
// `bpm deploy ARGS` (which fails: the manager dies under it), and checks
// the manager died of SIGKILL there. Only the manager is armed: the CLI
// runs the same binary.
func (e *env) crashDeploy(point string, args ...string) {
	t := e.t
	t.Helper()
	plain := e.vars
	e.vars = append(slices.Clip(plain), "BPM_CRASHPOINT="+point)
	e.startManager()
	e.vars = plain
	if out, errs, code := e.run(append([]string{"deploy", "-o", "json"}, args...)...); code == 0 {
		t.Fatalf("deploy succeeded although the manager was to die at %s:\n%s%s", point, out, errs)
	}
	e.waitKilled(point)
}

// waitKilled waits for e's manager to die and checks it died of SIGKILL,
// at crash point point.
func (e *env) waitKilled(point string) {
	t := e.t
	t.Helper()
	select {
	case <-e.mgrDone:
	case <-time.After(time.Minute):
		t.Fatalf("the command failed but the manager is still running (crash point %s never reached?)", point)
	}
	if ws, ok := e.mgr.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("manager ended with %v, want killed by SIGKILL at %s:\n%s", e.mgr.ProcessState, point, e.managerLog())
	}
	e.mgr = nil
}

// checkAccounted asserts the crash test's invariant: every instance bpm
// lists is running with its container (bpm's labels on it) or is failed
// with no container, and every instance container on the engine with the
// remote's label is one of bpm's live instances.
func checkAccounted(t *testing.T, e *env, d testenv.Docker) {
	t.Helper()
	live := map[string]bool{}
	for _, in := range e.list(false) {
		labels, err := dockerTLS(t, d, "inspect", "-f", "{{json .Config.Labels}}", in.ID)
		switch in.State {
		case "running":
			live[in.ID] = true
			if err != nil || !strings.Contains(labels, `"bpm.instance":"`+in.ID+`"`) || !strings.Contains(labels, `"bpm.remote":"`+crashRemote+`"`) {
				t.Errorf("running instance %s: container labels %s, %v", in.ID, labels, err)
			}
		case "failed":
			if err == nil {
				t.Errorf("failed instance %s still has a container", in.ID)
			}
		default:
			t.Errorf("instance %s is %s (%s): neither running nor failed", in.ID, in.State, in.Message)
		}
	}
	out, err := dockerTLS(t, d, "ps", "-a", "--filter", "label=bpm.remote="+crashRemote, "--filter", "label=bpm.role=instance", "--format", `{{.Label "bpm.instance"}}`)
	if err != nil {
		t.Fatalf("docker ps: %v: %s", err, out)
	}
	for _, id := range strings.Fields(out) {
		if !live[id] {
			t.Errorf("container of %s is on the engine but bpm lists no live instance of that id", id)
		}
	}
}

// remoteObjects lists what the engine holds for remote: every container with
// its label (instances and the gateway), its network and its bridge volume.
func remoteObjects(t *testing.T, d testenv.Docker, remote string) []string {
	t.Helper()
	var objs []string
	out, err := dockerTLS(t, d, "ps", "-a", "--filter", "label=bpm.remote="+remote, "--format", "{{.Names}}")
	if err != nil {
		t.Fatalf("docker ps: %v: %s", err, out)
	}
	for _, n := range strings.Fields(out) {
		objs = append(objs, "container "+n)
	}
	if _, err := dockerTLS(t, d, "network", "inspect", "bpm-"+remote); err == nil {
		objs = append(objs, "network bpm-"+remote)
	}
	if _, err := dockerTLS(t, d, "volume", "inspect", "bpm-"+remote+"-bridge"); err == nil {
		objs = append(objs, "volume bpm-"+remote+"-bridge")
	}
	return objs
}

// removeRemoteObjects removes whatever remoteObjects finds, behind bpm's
// back: cleanup of a failed run, never part of what a test checks.
func removeRemoteObjects(t *testing.T, d testenv.Docker, remote string) {
	t.Helper()
	out, _ := dockerTLS(t, d, "ps", "-aq", "--filter", "label=bpm.remote="+remote)
	if ids := strings.Fields(out); len(ids) > 0 {
		dockerTLS(t, d, append([]string{"rm", "-f"}, ids...)...)
	}
	dockerTLS(t, d, "network", "rm", "bpm-"+remote)
	dockerTLS(t, d, "volume", "rm", "bpm-"+remote+"-bridge")
}
