package state

import (
	"context"
	"errors"
	"testing"
)

func TestMetaInsertDeleteList(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.InsertMeta(ctx, "svc/1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertMeta(ctx, "svc/1", []byte("b")); !errors.Is(err, ErrExists) {
		t.Fatalf("second insert = %v, want ErrExists", err)
	}
	if v, err := s.GetMeta(ctx, "svc/1"); err != nil || string(v) != "a" {
		t.Fatalf("insert replaced the first value: %q, %v", v, err)
	}
	// Keys that a LIKE pattern would confuse: _ and % are literal here.
	for _, k := range []string{"svc/2", "svc_x", "svc%", "other/1", "svc/0"} {
		if err := s.SetMeta(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListMeta(ctx, "svc/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Key)
	}
	if want := []string{"svc/0", "svc/1", "svc/2"}; len(keys) != 3 || keys[0] != want[0] || keys[1] != want[1] || keys[2] != want[2] {
		t.Fatalf("ListMeta(svc/) = %v, want %v", keys, want)
	}
	if err := s.DeleteMeta(ctx, "svc/1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeta(ctx, "svc/1"); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}
	if _, err := s.GetMeta(ctx, "svc/1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMeta after delete = %v, want ErrNotFound", err)
	}
}
