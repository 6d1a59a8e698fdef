package ssh

import (
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
)

func TestSiteName(t *testing.T) {
	for in, want := range map[string]string{
		"10.213.10.12:22":        "10-213-10-12-22",
		"Node1.Example.COM:2222": "node1-example-com-2222",
		"[fd00::1]:22":           "fd00-1-22",
		"[::1]:22":               "1-22",
		strings.Repeat("a", 80):  strings.Repeat("a", 63),
		"--":                     "host",
		"a.-b:22":                "a-b-22",
	} {
		got := siteName(in)
		if got != want || !provider.SiteRE.MatchString(got) {
			t.Errorf("siteName(%q) = %q, want %q (and a valid site)", in, got, want)
		}
	}
}
