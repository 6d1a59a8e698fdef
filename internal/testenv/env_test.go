package testenv

import (
	"strings"
	"testing"
)

func TestParseExports(t *testing.T) {
	out := []byte("export BPM_TEST_A=/plain/path\n" +
		"noise\n" +
		"export BPM_TEST_B=/with\\ space/x\n" +
		"export BPM_TEST_C='quoted value'\n" +
		"export BPM_TEST_D=1.2.3.4:22\\ 5.6.7.8:22\n")
	got := ParseExports(out)
	want := map[string]string{
		"BPM_TEST_A": "/plain/path",
		"BPM_TEST_B": "/with space/x",
		"BPM_TEST_C": "quoted value",
		"BPM_TEST_D": "1.2.3.4:22 5.6.7.8:22",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestMissingNamesComponentAndVariables(t *testing.T) {
	m := missing(map[string]string{"BPM_TEST_RELAY_ADDR": "x", "BPM_TEST_RELAY_PORT": "1"}, []string{"relay"})
	if got := strings.Join(m["relay"], ","); got != "BPM_TEST_RELAY_CONTROL" {
		t.Errorf("missing relay vars = %q", got)
	}
	if m := missing(fromVars(nil).vars, nil); m != nil {
		t.Errorf("no components: missing = %v", m)
	}
}

func TestRepoRoot(t *testing.T) {
	if RepoRoot() == "" {
		t.Fatal("RepoRoot found no scripts/testenv")
	}
}
