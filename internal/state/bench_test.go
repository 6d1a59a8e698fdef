package state

import (
	"context"
	"fmt"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
)

// BenchmarkListInstances10k lists every live instance out of 10,000, the
// figure `bpm list` must handle well under 50 ms.
func BenchmarkListInstances10k(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	const n = 10000
	for i := 0; i < n; i++ {
		in := newInst(fmt.Sprintf("bp-bench%05d", i))
		in.Remote = []string{"local", "aws", "home"}[i%3]
		in.ServiceID = uint64(i)
		in.Handle = provider.Handle(`{"container":"0123456789abcdef0123456789abcdef","network":"bpm"}`)
		in.Address = "10.0.0.1:9000"
		in.Message = "running"
		in.State = provider.StateRunning
		if err := s.CreateInstance(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		list, err := s.ListInstances(ctx, Filter{})
		if err != nil {
			b.Fatal(err)
		}
		if len(list) != n {
			b.Fatalf("listed %d, want %d", len(list), n)
		}
	}
}

// BenchmarkCreateInstance is one intent row: an insert and its event in one
// committed transaction.
func BenchmarkCreateInstance(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if err := s.CreateInstance(ctx, newInst(fmt.Sprintf("bp-c%08d", i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
