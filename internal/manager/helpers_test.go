package manager_test

import (
	"strconv"
	"testing"

	"github.com/bpm-project/bpm/internal/blueprint"
)

func itoa(i int) string { return strconv.Itoa(i) }

func loadPkg(t *testing.T, dir string) *blueprint.Package {
	t.Helper()
	p, err := blueprint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
