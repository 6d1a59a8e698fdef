package registry

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func rec(id uint64) *Record {
	return &Record{
		ServiceID:    id,
		APIKeyPrefix: "ak_",
		Owners:       []Owner{{KeyType: KeyTypeEcdsa, KeyBytes: []byte{2, 1, 2, 3}}},
		UpstreamURL:  "http://127.0.0.1:9000",
	}
}

func stores(t *testing.T) map[string]func() Store {
	dir := t.TempDir()
	return map[string]func() Store{
		"mem": func() Store { return NewMemStore() },
		"file": func() Store {
			s, err := OpenFileStore(filepath.Join(dir, t.Name()+".json"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func TestRegistryOperations(t *testing.T) {
	ctx := context.Background()
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := mk()
			r, err := Open(ctx, store, nil)
			if err != nil {
				t.Fatal(err)
			}
			var events []Event
			cancel := r.Subscribe(func(ev Event) { events = append(events, ev) })
			defer cancel()

			if err := r.Create(ctx, rec(7)); err != nil {
				t.Fatal(err)
			}
			if err := r.Create(ctx, rec(7)); !errors.Is(err, ErrExists) {
				t.Fatalf("second Create = %v, want ErrExists", err)
			}
			got, err := r.Get(ID{Main: 7})
			if err != nil || got.UpstreamURL != "http://127.0.0.1:9000" {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			// Get returns a copy: mutating it changes nothing.
			got.Owners[0].KeyBytes[0] = 9
			if again, _ := r.Get(ID{Main: 7}); again.Owners[0].KeyBytes[0] != 2 {
				t.Fatal("Get returned shared memory")
			}

			o := Owner{KeyType: KeyTypeSr25519, KeyBytes: []byte{1}}
			for range 2 { // idempotent
				if err := r.AddOwner(ctx, ID{Main: 7}, o); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := r.Get(ID{Main: 7}); len(got.Owners) != 2 {
				t.Fatalf("owners after add = %d, want 2", len(got.Owners))
			}
			for range 2 {
				if err := r.RemoveOwner(ctx, ID{Main: 7}, o); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := r.Get(ID{Main: 7}); len(got.Owners) != 1 {
				t.Fatalf("owners after remove = %d, want 1", len(got.Owners))
			}
			if err := r.AddOwner(ctx, ID{Main: 8}, o); !errors.Is(err, ErrNotFound) {
				t.Fatalf("AddOwner(missing) = %v", err)
			}

			over := rec(7)
			over.UpstreamURL = "http://127.0.0.1:9001"
			over.Owners = nil
			if err := r.Put(ctx, over); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Get(ID{Main: 7}); got.UpstreamURL != over.UpstreamURL || len(got.Owners) != 0 {
				t.Fatalf("overwrite kept old fields: %+v", got)
			}
			two := rec(3)
			two.InstanceID = "bp-x"
			if err := r.Create(ctx, two); err != nil {
				t.Fatal(err)
			}
			if l := r.List(); len(l) != 2 || l[0].ServiceID != 3 || l[1].ServiceID != 7 {
				t.Fatalf("List = %+v", l)
			}

			// A fresh registry over the same store sees the same records.
			r2, err := Open(ctx, store, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r2.Get(ID{Main: 7}); err != nil || got.UpstreamURL != over.UpstreamURL {
				t.Fatalf("reopened Get = %+v, %v", got, err)
			}

			ids, err := r.DeleteInstance(ctx, "bp-x")
			if err != nil || len(ids) != 1 || ids[0] != (ID{Main: 3}) {
				t.Fatalf("DeleteInstance = %v, %v", ids, err)
			}
			if err := r.Delete(ctx, ID{Main: 7}); err != nil {
				t.Fatal(err)
			}
			if err := r.Delete(ctx, ID{Main: 7}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second Delete = %v", err)
			}
			if _, err := r.Get(ID{Main: 7}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after delete = %v", err)
			}
			kinds := []EventKind{}
			for _, ev := range events {
				kinds = append(kinds, ev.Kind)
			}
			want := []EventKind{EventPut, EventPut, EventPut, EventPut, EventPut, EventDelete, EventDelete}
			if len(kinds) != len(want) {
				t.Fatalf("events %v, want %v", kinds, want)
			}
			for i := range want {
				if kinds[i] != want[i] {
					t.Fatalf("events %v, want %v", kinds, want)
				}
			}
		})
	}
}

func TestCreateRaceOneWinner(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if r.Create(ctx, rec(1)) == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d creates won, want 1", wins.Load())
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	r, _ := Open(ctx, NewMemStore(), nil)
	bad := rec(1)
	bad.Transport = "carrier-pigeon"
	if err := r.Create(ctx, bad); err == nil {
		t.Fatal("unknown transport accepted")
	}
	bad.Transport = TransportTunnel
	if err := r.Create(ctx, bad); err == nil {
		t.Fatal("tunnel without gateway accepted")
	}
	bad.Gateway = "aws"
	if err := r.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{"7", ID{7, 0}, true},
		{"7:3", ID{7, 3}, true},
		{"18446744073709551615:0", ID{^uint64(0), 0}, true},
		{"18446744073709551616", ID{}, false},
		{"", ID{}, false},
		{"+7", ID{}, false},
		{" 7", ID{}, false},
		{"7:", ID{}, false},
		{"7:3:1", ID{}, false},
		{"0x7", ID{}, false},
	} {
		got, err := ParseID(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseID(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "1:2", "", ":", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err == nil {
			if back, err := ParseID(id.String()); err != nil || back != id {
				t.Fatalf("round trip %q -> %v -> %v %v", s, id, back, err)
			}
		}
	})
}
