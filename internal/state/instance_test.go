package state

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
)

func ptr[T any](v T) *T { return &v }

// fakeClock hands out strictly increasing times so ordering is testable.
func fakeClock(s *Store) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	n := 0
	s.now = func() time.Time {
		n++
		return t0.Add(time.Duration(n) * time.Second)
	}
}

func TestCreateGet(t *testing.T) {
	s := openTest(t)
	fakeClock(s)
	ctx := context.Background()
	in := newInst("bp-0123456789")
	in.BlueprintID = 1<<64 - 1 // u64 ids above MaxInt64 survive the int64 column
	in.ServiceID = 1 << 63
	in.Handle = provider.Handle(`{"container":"abc"}`)
	in.Address = "127.0.0.1:9000"
	in.Message = "queued"
	in.Site = "h-10-0-0-2-22"
	if err := s.CreateInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetInstance(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provider.StatePending {
		t.Errorf("State = %q, want pending by default", got.State)
	}
	if got.BlueprintID != in.BlueprintID || got.ServiceID != in.ServiceID {
		t.Errorf("ids = %d/%d, want %d/%d", got.BlueprintID, got.ServiceID, in.BlueprintID, in.ServiceID)
	}
	if got.Remote != "local" || got.ProviderType != "local" || got.BlueprintName != "echo" ||
		got.PackagePath != "/srv/echo" || got.Message != "queued" || got.Address != in.Address ||
		!bytes.Equal(got.Handle, in.Handle) || got.Site != in.Site {
		t.Errorf("round trip mismatch: %+v", got)
	}
	want := time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC)
	if !got.CreatedAt.Equal(want) || !got.UpdatedAt.Equal(want) || got.TerminatedAt != nil {
		t.Errorf("times = %v %v %v, want created=updated=%v", got.CreatedAt, got.UpdatedAt, got.TerminatedAt, want)
	}
}

func TestCreateDuplicate(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateInstance(ctx, newInst("bp-dup")); err != nil {
		t.Fatal(err)
	}
	other := newInst("bp-dup")
	other.Remote = "aws"
	err := s.CreateInstance(ctx, other)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second create = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "bp-dup") {
		t.Errorf("error %q does not name the instance", err)
	}
	got, err := s.GetInstance(ctx, "bp-dup")
	if err != nil {
		t.Fatal(err)
	}
	if got.Remote != "local" {
		t.Errorf("duplicate overwrote the row: remote = %q", got.Remote)
	}
	// The failed create wrote no event either.
	ev, err := s.Events(ctx, "bp-dup", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 {
		t.Errorf("events = %d, want 1", len(ev))
	}
}

func TestCreateInvalid(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for name, mut := range map[string]func(*Instance){
		"no prefix":     func(i *Instance) { i.ID = "abc" },
		"empty id":      func(i *Instance) { i.ID = "" },
		"upper case":    func(i *Instance) { i.ID = "bp-ABC" },
		"bare prefix":   func(i *Instance) { i.ID = "bp-" },
		"slash":         func(i *Instance) { i.ID = "bp-a/b" },
		"no remote":     func(i *Instance) { i.Remote = "" },
		"no provider":   func(i *Instance) { i.ProviderType = "" },
		"unknown state": func(i *Instance) { i.State = "sleeping" },
	} {
		in := newInst("bp-ok")
		mut(&in)
		if err := s.CreateInstance(ctx, in); err == nil {
			t.Errorf("%s: CreateInstance succeeded", name)
		}
	}
	list, err := s.ListInstances(ctx, Filter{IncludeTerminated: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("invalid creates left %d rows", len(list))
	}
}

func TestNotFound(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.GetInstance(ctx, "bp-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetInstance = %v, want ErrNotFound", err)
	}
	if !errors.Is(ErrNotFound, provider.ErrNotFound) {
		t.Error("state.ErrNotFound is not provider.ErrNotFound")
	}
	if _, err := s.UpdateInstance(ctx, "bp-none", Update{Message: ptr("x")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateInstance = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateInstance(ctx, "bp-none", Update{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty UpdateInstance = %v, want ErrNotFound", err)
	}
	if err := s.AppendEvent(ctx, "bp-none", EventHealth, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AppendEvent = %v, want ErrNotFound", err)
	}
	if _, err := s.Events(ctx, "bp-none", 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("Events = %v, want ErrNotFound", err)
	}
	if _, err := s.GetMeta(ctx, "none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetMeta = %v, want ErrNotFound", err)
	}
}

func TestUpdateAndTransitions(t *testing.T) {
	s := openTest(t)
	fakeClock(s)
	ctx := context.Background()
	id := "bp-upd"
	if err := s.CreateInstance(ctx, newInst(id)); err != nil {
		t.Fatal(err)
	}

	got, err := s.UpdateInstance(ctx, id, Update{State: ptr(provider.StateCreating)})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provider.StateCreating {
		t.Errorf("State = %q", got.State)
	}

	h := provider.Handle("h1")
	got, err = s.UpdateInstance(ctx, id, Update{
		State:   ptr(provider.StateRunning),
		Message: ptr("healthy"),
		Handle:  &h,
		Address: ptr("10.0.0.2:8080"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provider.StateRunning || got.Message != "healthy" || string(got.Handle) != "h1" ||
		got.Address != "10.0.0.2:8080" || got.TerminatedAt != nil {
		t.Errorf("after update: %+v", got)
	}
	if !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("UpdatedAt %v not after CreatedAt %v", got.UpdatedAt, got.CreatedAt)
	}
	// What UpdateInstance returned is what is stored.
	stored, err := s.GetInstance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.State != got.State || stored.Message != got.Message || !stored.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("stored %+v, returned %+v", stored, got)
	}

	// Same state again, other fields only: no state event.
	if _, err := s.UpdateInstance(ctx, id, Update{State: ptr(provider.StateRunning), Message: ptr("still ok")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(ctx, id, EventRestart, "restarted by operator"); err != nil {
		t.Fatal(err)
	}

	got, err = s.UpdateInstance(ctx, id, Update{State: ptr(provider.StateTerminated)})
	if err != nil {
		t.Fatal(err)
	}
	if got.TerminatedAt == nil || !got.TerminatedAt.Equal(got.UpdatedAt) {
		t.Errorf("TerminatedAt = %v, want %v", got.TerminatedAt, got.UpdatedAt)
	}
	stored, err = s.GetInstance(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.TerminatedAt == nil || !stored.TerminatedAt.Equal(*got.TerminatedAt) {
		t.Errorf("stored TerminatedAt = %v", stored.TerminatedAt)
	}

	// Terminated is final.
	_, err = s.UpdateInstance(ctx, id, Update{State: ptr(provider.StateRunning)})
	if !errors.Is(err, ErrTerminated) {
		t.Errorf("leaving terminated = %v, want ErrTerminated", err)
	}
	if _, err := s.UpdateInstance(ctx, id, Update{State: ptr(provider.State("bogus"))}); err == nil {
		t.Error("invalid state accepted")
	}

	ev, err := s.Events(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i, e := range ev {
		if e.InstanceID != id {
			t.Errorf("event %d instance = %q", i, e.InstanceID)
		}
		if i > 0 && (e.Seq <= ev[i-1].Seq || e.Time.Before(ev[i-1].Time)) {
			t.Errorf("event %d out of order", i)
		}
		lines = append(lines, e.Kind+" "+e.Message)
	}
	want := []string{
		"state created pending",
		"state pending -> creating",
		"state creating -> running: healthy",
		"restart restarted by operator",
		"state running -> terminated",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("events:\n got %q\nwant %q", lines, want)
	}

	// limit keeps the newest, still oldest first.
	ev, err = s.Events(ctx, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 2 || ev[0].Kind != EventRestart || ev[1].Message != "running -> terminated" {
		t.Errorf("Events(limit 2) = %+v", ev)
	}
}

func TestUpdateEmptyIsNoop(t *testing.T) {
	s := openTest(t)
	fakeClock(s)
	ctx := context.Background()
	if err := s.CreateInstance(ctx, newInst("bp-noop")); err != nil {
		t.Fatal(err)
	}
	before, _ := s.GetInstance(ctx, "bp-noop")
	after, err := s.UpdateInstance(ctx, "bp-noop", Update{})
	if err != nil {
		t.Fatal(err)
	}
	if !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("empty update moved UpdatedAt")
	}
}

func TestUpdateClearsHandle(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	in := newInst("bp-h")
	in.Handle = provider.Handle("x")
	if err := s.CreateInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	var empty provider.Handle
	got, err := s.UpdateInstance(ctx, "bp-h", Update{Handle: &empty})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.GetInstance(ctx, "bp-h")
	if got.Handle != nil || stored.Handle != nil {
		t.Errorf("handle = %q / %q, want cleared", got.Handle, stored.Handle)
	}
}

func TestListFilters(t *testing.T) {
	s := openTest(t)
	fakeClock(s)
	ctx := context.Background()
	type row struct {
		id, remote string
		service    uint64
		state      provider.State
	}
	rows := []row{
		{"bp-a", "local", 1, provider.StateRunning},
		{"bp-b", "aws", 2, provider.StatePending},
		{"bp-c", "aws", 1, provider.StateTerminated},
		{"bp-d", "home", 3, provider.StateFailed},
		{"bp-e", "aws", 2, provider.StateRunning},
	}
	for _, r := range rows {
		in := newInst(r.id)
		in.Remote, in.ServiceID = r.remote, r.service
		if err := s.CreateInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
		if r.state != provider.StatePending {
			if _, err := s.UpdateInstance(ctx, r.id, Update{State: ptr(r.state)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Two rows created in the same nanosecond are ordered by id.
	same := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"bp-z2", "bp-z1"} {
		in := newInst(id)
		in.Remote = "tie"
		in.CreatedAt = same
		if err := s.CreateInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"default hides terminated", Filter{}, []string{"bp-z1", "bp-z2", "bp-a", "bp-b", "bp-d", "bp-e"}},
		{"include terminated", Filter{IncludeTerminated: true}, []string{"bp-z1", "bp-z2", "bp-a", "bp-b", "bp-c", "bp-d", "bp-e"}},
		{"remote", Filter{Remote: "aws"}, []string{"bp-b", "bp-e"}},
		{"remote with terminated", Filter{Remote: "aws", IncludeTerminated: true}, []string{"bp-b", "bp-c", "bp-e"}},
		{"states", Filter{States: []provider.State{provider.StateRunning, provider.StateFailed}}, []string{"bp-a", "bp-d", "bp-e"}},
		{"states naming terminated", Filter{States: []provider.State{provider.StateTerminated}}, []string{"bp-c"}},
		{"service", Filter{ServiceID: ptr(uint64(1))}, []string{"bp-a"}},
		{"service with terminated", Filter{ServiceID: ptr(uint64(1)), IncludeTerminated: true}, []string{"bp-a", "bp-c"}},
		{"remote and service and state", Filter{Remote: "aws", ServiceID: ptr(uint64(2)), States: []provider.State{provider.StateRunning}}, []string{"bp-e"}},
		{"nothing matches", Filter{Remote: "gcp"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListInstances(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, in := range got {
				ids = append(ids, in.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("got %v, want %v", ids, tc.want)
			}
		})
	}
	if _, err := s.ListInstances(ctx, Filter{States: []provider.State{"bogus"}}); err == nil {
		t.Error("invalid state filter accepted")
	}
}

func TestListUsesIndexes(t *testing.T) {
	// list must stay fast as terminated history grows; check the plans
	// rather than timings, which tests never assert.
	s := openTest(t)
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "instances_live"},
		{Filter{IncludeTerminated: true}, "instances_created"},
		{Filter{Remote: "aws", IncludeTerminated: true}, "instances_remote"},
	} {
		q, args := listQuery(tc.f)
		rows, err := s.reader.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		t.Logf("%+v: %s", tc.f, joined)
		if !strings.Contains(joined, tc.want) || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("filter %+v: plan %q, want index %s and no sort", tc.f, joined, tc.want)
		}
	}
}

func TestNewInstanceID(t *testing.T) {
	re := regexp.MustCompile(`^bp-[0-9a-v]{10}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewInstanceID()
		if !re.MatchString(id) {
			t.Fatalf("NewInstanceID() = %q", id)
		}
		if !ValidInstanceID(id) {
			t.Fatalf("ValidInstanceID(%q) = false", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestMeta(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.SetMeta(ctx, "hub.endpoint", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "hub.endpoint", []byte("b")); err != nil {
		t.Fatal(err)
	}
	v, err := s.GetMeta(ctx, "hub.endpoint")
	if err != nil || string(v) != "b" {
		t.Errorf("GetMeta = %q, %v; want b", v, err)
	}
	if err := s.SetMeta(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	v, err = s.GetMeta(ctx, "empty")
	if err != nil || v == nil || len(v) != 0 {
		t.Errorf("GetMeta(empty) = %#v, %v; want empty non-nil", v, err)
	}
	if err := s.SetMeta(ctx, "", []byte("x")); err == nil {
		t.Error("empty key accepted")
	}
}

func TestAppendEventValidates(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateInstance(ctx, newInst("bp-ev")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(ctx, "bp-ev", "", "x"); err == nil {
		t.Error("empty kind accepted")
	}
}
