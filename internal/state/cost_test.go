package state

import (
	"context"
	"testing"
	"time"
)

func TestIntervals(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.CreateInstance(ctx, Instance{ID: "bp-a", Remote: "aws", ProviderType: "kubernetes",
		BlueprintName: "echo", PackagePath: "/p"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if ok, err := s.OpenInterval(ctx, "bp-a", t0, 0.5); err != nil || !ok {
		t.Fatalf("open: %v %v", ok, err)
	}
	// A second "running" while open must not start a second interval.
	if ok, err := s.OpenInterval(ctx, "bp-a", t0.Add(time.Hour), 0.7); err != nil || ok {
		t.Fatalf("reopen: %v %v", ok, err)
	}
	if err := s.CloseInterval(ctx, "bp-a", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenInterval(ctx, "bp-a", t0.Add(3*time.Hour), 0.5); err != nil {
		t.Fatal(err)
	}
	// A crash-recovery close before the start clamps to the start.
	if n, err := s.CloseOpenIntervals(ctx, t0); err != nil || n != 1 {
		t.Fatalf("close open: %d %v", n, err)
	}
	var got []Interval
	if err := s.EachInterval(ctx, t0, func(iv Interval) error { got = append(got, iv); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].End.Sub(got[0].Start) != 2*time.Hour || !got[1].End.Equal(got[1].Start) {
		t.Fatalf("intervals: %+v", got)
	}
	if r, ok, err := s.LastRate(ctx, "bp-a"); err != nil || !ok || r != 0.5 {
		t.Fatalf("last rate: %v %v %v", r, ok, err)
	}
}
