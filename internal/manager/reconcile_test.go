//go:build !bpm_noremote

package manager_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// listerTargets is what each "listerremote" remote holds, by remote name.
// Package level because every manager start builds a new provider, and the
// target must outlive the manager as a real engine does.
var listerTargets = struct {
	sync.Mutex
	m map[string]*listerTarget
}{m: map[string]*listerTarget{}}

// listerTarget is a remote's instances by id, each in the state its
// provider would report.
type listerTarget struct {
	mu         sync.Mutex
	insts      map[string]provider.State
	terminated []string
}

func targetOf(remote string) *listerTarget {
	listerTargets.Lock()
	defer listerTargets.Unlock()
	t, ok := listerTargets.m[remote]
	if !ok {
		t = &listerTarget{insts: map[string]provider.State{}}
		listerTargets.m[remote] = t
	}
	return t
}

func init() {
	provider.Register(provider.Info{
		Type:      "listerremote",
		Remote:    true,
		NewConfig: func() any { return &fakeRemoteConfig{} },
		New: func(_ context.Context, env provider.Env) (provider.Provider, error) {
			return &listerRemote{target: targetOf(env.Remote)}, nil
		},
	})
}

// listerRemote is fakeRemote with ListOwned: what reconcile needs to tell a
// deploy that never reached the target from one that did.
type listerRemote struct {
	fakeRemote
	target *listerTarget
}

var _ provider.Lister = (*listerRemote)(nil)

func (p *listerRemote) Status(_ context.Context, ref provider.Ref) (provider.Status, error) {
	p.target.mu.Lock()
	defer p.target.mu.Unlock()
	st, ok := p.target.insts[ref.InstanceID]
	if !ok {
		return provider.Status{}, provider.ErrNotFound
	}
	out := provider.Status{State: st, Address: fakeRemoteAddr}
	if st == provider.StateDegraded {
		out.Restarts = 1 // restarting, not a service still coming up
	}
	return out, nil
}

func (p *listerRemote) Terminate(_ context.Context, ref provider.Ref) error {
	p.target.mu.Lock()
	defer p.target.mu.Unlock()
	delete(p.target.insts, ref.InstanceID)
	p.target.terminated = append(p.target.terminated, ref.InstanceID)
	return nil
}

func (p *listerRemote) ListOwned(context.Context) ([]provider.Owned, error) {
	p.target.mu.Lock()
	defer p.target.mu.Unlock()
	var out []provider.Owned
	for id, st := range p.target.insts {
		out = append(out, provider.Owned{InstanceID: id, Handle: provider.Handle("h-" + id), State: st})
	}
	return out, nil
}

// A deploy interrupted before its handle was recorded (the manager was
// killed: see test/e2e/crash_docker_test.go for the real thing) is adopted
// by the next manager when its instance runs on the target, and undone
// otherwise: the client was told the deploy failed, and a created
// container nobody starts would sit there forever. Undoing calls Terminate
// even when the target shows nothing, so what the remote shares (a docker
// gateway, network, volume) goes with its last instance.
func TestReconcileInterruptedDeploys(t *testing.T) {
	const remote = "crashy"
	f := newFixtureConfig(t, "\n[remote."+remote+"]\ntype = \"listerremote\"\n")
	ctx := ctxT(t)
	dir, _ := f.writePackage("http")

	st, err := state.Open(ctx, filepath.Join(f.cfg.Manager.DataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	target := targetOf(remote)
	cases := []struct {
		onTarget  provider.State // "" when the deploy never reached it
		row       provider.State // the intent row as the crash left it
		wantState string
		kept      bool // still on the target after reconcile
	}{
		{"", provider.StatePending, "failed", false},
		{"", provider.StateCreating, "failed", false},
		{provider.StateCreating, provider.StateCreating, "failed", false}, // created, never started
		{provider.StateFailed, provider.StateCreating, "failed", false},
		{provider.StateRunning, provider.StateCreating, "running", true},
		{provider.StateDegraded, provider.StateCreating, "degraded", true}, // started, restarting
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = state.NewInstanceID()
		in := state.Instance{ID: ids[i], Remote: remote, ProviderType: "listerremote", BlueprintName: "svc",
			ServiceID: uint64(i + 1), PackagePath: dir, State: c.row}
		if err := st.CreateInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
		if c.onTarget != "" {
			target.insts[ids[i]] = c.onTarget
		}
	}
	st.Close()

	f.start()
	for i, c := range cases {
		d, err := f.client.Status(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		for _, e := range d.Events {
			events = append(events, e.Message)
		}
		log := strings.Join(events, "\n")
		if d.State != c.wantState {
			t.Errorf("row %s, target %q: state %s (%s), want %s", c.row, c.onTarget, d.State, d.Message, c.wantState)
		}
		target.mu.Lock()
		_, kept := target.insts[ids[i]]
		undone := slices.Contains(target.terminated, ids[i])
		target.mu.Unlock()
		if kept != c.kept || undone == c.kept {
			t.Errorf("row %s, target %q: on the target after reconcile %v, terminated %v; want kept %v", c.row, c.onTarget, kept, undone, c.kept)
		}
		if c.kept && !strings.Contains(log, "adopted") {
			t.Errorf("row %s, target %q: no adoption in the events:\n%s", c.row, c.onTarget, log)
		}
		if !c.kept && (!strings.Contains(d.Message, "interrupted") || !strings.Contains(log, "interrupted")) {
			t.Errorf("row %s, target %q: message %q and events do not say the deploy was interrupted:\n%s", c.row, c.onTarget, d.Message, log)
		}
	}
}
