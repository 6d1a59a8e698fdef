package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/manager"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/state"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestDeployListStatusLogsTerminate(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, port := f.writePackage("http")

	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if inst.ServiceID != 1 || inst.BlueprintID != 4 || inst.Remote != "local" || inst.Blueprint != "svc" {
		t.Fatalf("deployed instance = %+v", inst)
	}
	d := waitState(t, f.client, inst.ID, "running")
	if d.Address == "" || !strings.HasSuffix(d.Address, ":"+itoa(port)) {
		t.Fatalf("address %q, want port %d", d.Address, port)
	}
	resp, err := http.Get("http://" + d.Address + "/env")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	err = json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"BLUEPRINT_ID": "4", "SERVICE_ID": "1", "PROTOCOL": "tangle", "CHAIN": "local_testnet"} {
		if env[k] != want {
			t.Errorf("service env %s=%q, want %q", k, env[k], want)
		}
	}
	if !strings.HasPrefix(env["DATA_DIR"], f.cfg.Manager.DataDir) || !strings.HasSuffix(env["BRIDGE_SOCKET_PATH"], "/svc-4-1/svc-4-1.sock") {
		t.Errorf("DATA_DIR %q / BRIDGE_SOCKET_PATH %q not where the manager puts them", env["DATA_DIR"], env["BRIDGE_SOCKET_PATH"])
	}

	list, err := f.client.List(ctx, api.ListOptions{})
	if err != nil || len(list) != 1 || list[0].ID != inst.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if remote, _ := f.client.List(ctx, api.ListOptions{RemoteOnly: true}); len(remote) != 0 {
		t.Fatalf("remote-only list shows a local instance: %+v", remote)
	}

	var logs bytes.Buffer
	if err := f.client.Logs(ctx, inst.ID, false, 0, &logs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), testservice.Marker) {
		t.Fatalf("logs lack the service's output: %q", logs.String())
	}

	out, err := f.client.Terminate(ctx, inst.ID)
	if err != nil || out.State != "terminated" {
		t.Fatalf("terminate: %+v %v", out, err)
	}
	if _, err := http.Get("http://" + d.Address + "/healthz"); err == nil {
		t.Fatal("service still answers after terminate")
	}
	if again, err := f.client.Terminate(ctx, inst.ID); err != nil || again.State != "terminated" {
		t.Fatalf("second terminate: %+v %v", again, err)
	}
	if l, _ := f.client.List(ctx, api.ListOptions{}); len(l) != 0 {
		t.Fatalf("terminated instance still listed: %+v", l)
	}
	if l, _ := f.client.List(ctx, api.ListOptions{All: true}); len(l) != 1 {
		t.Fatalf("list --all lost the terminated instance: %+v", l)
	}
	st, err := f.client.Status(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range st.Events {
		kinds = append(kinds, e.Kind+":"+e.Message)
	}
	joined := strings.Join(kinds, "\n")
	for _, want := range []string{"created pending", "pending -> creating", "deploy:started on local", "-> terminating", "terminating -> terminated"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %q:\n%s", want, joined)
		}
	}
}

func TestServiceIDs(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir1, _ := f.writePackage("http")
	dir2, _ := f.writePackage("http")
	a, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir2})
	if err != nil {
		t.Fatal(err)
	}
	if a.ServiceID != 1 || b.ServiceID != 2 {
		t.Fatalf("service ids %d, %d; want 1, 2", a.ServiceID, b.ServiceID)
	}
	one := uint64(1)
	_, err = f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir1, ServiceID: &one})
	if !errors.Is(err, provider.ErrExists) || !strings.Contains(err.Error(), "already served by "+a.ID) {
		t.Fatalf("duplicate service id: %v", err)
	}
	list, _ := f.client.List(ctx, api.ListOptions{All: true})
	if len(list) != 2 {
		t.Fatalf("a refused deploy left a row: %+v", list)
	}
	// A terminated instance frees its service id.
	if _, err := f.client.Terminate(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	c, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir1, ServiceID: &one})
	if err != nil || c.ServiceID != 1 {
		t.Fatalf("redeploy on a freed id: %+v %v", c, err)
	}
}

// A deploy that fails records why and leaves no process behind.
func TestFailedDeployLeavesNothingRunning(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.override = func(o *local.Options) {
		o.Executable = local.StaticExecutable(filepath.Join(f.root, "no-such-binary"))
	}
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")
	_, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err == nil {
		t.Fatal("deploy of a missing binary succeeded")
	}
	list, _ := f.client.List(ctx, api.ListOptions{All: true})
	if len(list) != 1 || list[0].State != "failed" || !strings.Contains(list[0].Message, "no-such-binary") {
		t.Fatalf("failed deploy row = %+v", list)
	}
	owned := ownedInstances(t, f)
	if len(owned) != 0 {
		t.Fatalf("a failed deploy left processes: %+v", owned)
	}
}

func ownedInstances(t *testing.T, f *fixture) []provider.Owned {
	t.Helper()
	lp, err := local.New(func() local.Options {
		o := local.Options{DataDir: filepath.Join(f.cfg.Manager.DataDir, "local")}
		localTestOptions(&o)
		return o
	}())
	if err != nil {
		t.Fatal(err)
	}
	owned, err := lp.ListOwned(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return owned
}

// Reconcile after a restart: a still-running instance is re-attached (not
// started twice), one whose process died is marked failed, an interrupted
// deploy is marked failed, an interrupted terminate is finished, and an
// instance nobody recorded is terminated as an orphan.
func TestReconcileAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)

	dirKeep, _ := f.writePackage("http")
	keep, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dirKeep})
	if err != nil {
		t.Fatal(err)
	}
	dirDie, _ := f.writePackage("http")
	die, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dirDie})
	if err != nil {
		t.Fatal(err)
	}
	dirTerm, _ := f.writePackage("http")
	term, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dirTerm})
	if err != nil {
		t.Fatal(err)
	}
	keepD := waitState(t, f.client, keep.ID, "running")
	waitState(t, f.client, die.ID, "running")
	waitState(t, f.client, term.ID, "running")
	f.stop()

	// While the manager is down: one instance dies for good (its
	// supervisor and service are stopped behind bpm's back), a deploy is
	// left half-recorded, a terminate is left half-done, and an orphan
	// appears that state never heard of.
	lp := func() *local.Provider {
		o := local.Options{DataDir: filepath.Join(f.cfg.Manager.DataDir, "local")}
		localTestOptions(&o)
		p, err := local.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}()
	st, err := state.Open(ctx, filepath.Join(f.cfg.Manager.DataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	dieRow, _ := st.GetInstance(ctx, die.ID)
	if err := lp.Terminate(ctx, provider.Ref{InstanceID: die.ID, Handle: dieRow.Handle}); err != nil {
		t.Fatal(err)
	}
	pendingID := state.NewInstanceID()
	if err := st.CreateInstance(ctx, state.Instance{ID: pendingID, Remote: "local", ProviderType: "local", BlueprintName: "svc", PackagePath: dirKeep}); err != nil {
		t.Fatal(err)
	}
	terminating := provider.StateTerminating
	if _, err := st.UpdateInstance(ctx, term.ID, state.Update{State: &terminating}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	orphanDir, _ := f.writePackage("http")
	orphanPkg := loadPkg(t, orphanDir)
	orphanID := state.NewInstanceID()
	if _, err := lp.Deploy(ctx, provider.DeployRequest{InstanceID: orphanID, Remote: "local", Package: orphanPkg, Env: orphanPkg.Manifest.Env}); err != nil {
		t.Fatal(err)
	}

	f.start()
	list, err := f.client.List(ctx, api.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]api.Instance{}
	for _, in := range list {
		states[in.ID] = in
	}
	if got := states[keep.ID]; got.State != "running" && got.State != "creating" {
		t.Errorf("running instance after restart: %+v", got)
	}
	if got := states[die.ID]; got.State != "failed" {
		t.Errorf("dead instance after restart: %+v, want failed", got)
	}
	if got := states[pendingID]; got.State != "failed" || !strings.Contains(got.Message, "interrupted") {
		t.Errorf("interrupted deploy after restart: %+v, want failed", got)
	}
	if got := states[term.ID]; got.State != "terminated" {
		t.Errorf("interrupted terminate after restart: %+v, want terminated", got)
	}
	if _, known := states[orphanID]; known {
		t.Errorf("orphan %s was adopted into state", orphanID)
	}
	owned := ownedInstances(t, f)
	if len(owned) != 1 || owned[0].InstanceID != keep.ID {
		t.Fatalf("after reconcile the target runs %+v, want only %s", owned, keep.ID)
	}
	// The survivor still answers on the same address: it was re-attached,
	// not restarted elsewhere.
	if resp, err := http.Get("http://" + keepD.Address + "/healthz"); err != nil {
		t.Fatalf("re-attached instance does not answer: %v", err)
	} else {
		resp.Body.Close()
	}
}

// Crashes are reflected in state by the health loop without anyone asking.
func TestHealthLoopSeesCrashes(t *testing.T) {
	f := newFixture(t)
	f.terminateAll()
	f.start()
	ctx := ctxT(t)
	dir, _ := f.writePackage("crash")
	inst, err := f.client.Deploy(ctx, api.DeployRequest{PackagePath: dir})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		list, _ := f.client.List(ctx, api.ListOptions{})
		if len(list) == 1 && list[0].State == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crash-looping instance never listed as degraded: %+v", list)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d, err := f.client.Status(ctx, inst.ID)
	if err != nil || d.Restarts == 0 {
		t.Fatalf("status of a crash loop: restarts %d, %v", d.Restarts, err)
	}
}

func TestSecondManagerRefused(t *testing.T) {
	f := newFixture(t)
	f.start()
	_, err := manager.New(context.Background(), manager.Options{Config: f.cfg})
	if err == nil || !strings.Contains(err.Error(), "another bpm manager is running") {
		t.Fatalf("second manager on the same data dir: %v", err)
	}
	// A live socket is never stolen either.
	if _, err := manager.Listen(context.Background(), f.cfg.Manager.Socket); err == nil || !strings.Contains(err.Error(), "another manager is serving") {
		t.Fatalf("listen on a live socket: %v", err)
	}
}

func TestSocketMode(t *testing.T) {
	f := newFixture(t)
	f.start()
	fi, err := os.Stat(f.cfg.Manager.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestUnknownRemote(t *testing.T) {
	f := newFixture(t)
	f.start()
	dir, _ := f.writePackage("http")
	_, err := f.client.Deploy(ctxT(t), api.DeployRequest{PackagePath: dir, Remote: "nowhere"})
	if !errors.Is(err, provider.ErrNotFound) || !strings.Contains(err.Error(), `remote "nowhere"`) {
		t.Fatalf("deploy to an unknown remote: %v", err)
	}
	if l, _ := f.client.List(ctxT(t), api.ListOptions{All: true}); len(l) != 0 {
		t.Fatalf("a refused deploy left a row: %+v", l)
	}
}

// A deploy naming a config file other than the manager's is refused with a
// message saying how to use that file, and records nothing.
func TestRemoteConfigMismatch(t *testing.T) {
	f := newFixture(t)
	f.start()
	dir, _ := f.writePackage("http")
	other := filepath.Join(f.root, "production.toml")
	os.WriteFile(other, []byte(""), 0o600)
	_, err := f.client.Deploy(ctxT(t), api.DeployRequest{PackagePath: dir, RemoteConfig: other})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "bpm manager --remote-config "+other) {
		t.Fatalf("mismatched --remote-config: %v", err)
	}
	if l, _ := f.client.List(ctxT(t), api.ListOptions{All: true}); len(l) != 0 {
		t.Fatalf("a refused deploy left a row: %+v", l)
	}
}
