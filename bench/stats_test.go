package bench

import (
	"math"
	"os"
	"slices"
	"testing"
	"time"
)

// percentile returns the nearest-rank p-th percentile of d (0 < p ≤ 100):
// a duration that was actually measured, never an interpolation between two.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(n - i) // reversed: percentile must sort
		}
		return d
	}
	for _, tc := range []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{1, 50, 1},
		{1, 99, 1},
		{2, 50, 1},
		{3, 50, 2},
		{4, 50, 2},
		{100, 50, 50},
		{100, 99, 99},
		{100, 100, 100},
		{1000, 99, 990},
		{10, 1, 1},
	} {
		if got := percentile(seq(tc.n), tc.p); got != tc.want {
			t.Errorf("percentile(1..%d, %v) = %v, want %v", tc.n, tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestReadMemSelf(t *testing.T) {
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A running Go test binary is resident in at least a MiB, and its peak
	// can never be below what is resident now.
	if m.rss < 1 || m.hwm < m.rss {
		t.Errorf("readMem(self) = %+v: want rss ≥ 1 MiB and peak ≥ rss", m)
	}
}
