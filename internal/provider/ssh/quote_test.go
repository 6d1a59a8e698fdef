package ssh

import (
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"plain", "plain"},
		{"/home/u/.bpm/bin/bpm-abc", "/home/u/.bpm/bin/bpm-abc"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"$(touch /tmp/x)", "'$(touch /tmp/x)'"},
		{"`id`", "'`id`'"},
		{"a;b", "'a;b'"},
		{"a\nb", "'a\nb'"},
		{"~", "'~'"},
		{"=x", "'=x'"},
		{"*", "'*'"},
		{`back\slash`, `'back\slash'`},
	} {
		if got := quote(tc.in); got != tc.want {
			t.Errorf("quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := command("kill", "-TERM", "12"); got != "kill -TERM 12" {
		t.Errorf("command = %q", got)
	}
}

// shellEcho runs the quoted words through a real POSIX shell and returns
// what it received as arguments, one per NUL-terminated record.
func shellEcho(t testing.TB, args ...string) []string {
	t.Helper()
	out, err := exec.Command("sh", "-c", "printf '%s\\0' "+command(args...)).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func TestQuoteThroughShell(t *testing.T) {
	in := []string{"", "a b", "it's", "$(echo pwned)", "`id`", "a;b", "x\ny", "\"dq\"", "$HOME", "*", "~root", `\`, "a'b'c", "-n"}
	got := shellEcho(t, in...)
	if len(got) != len(in) {
		t.Fatalf("shell saw %d words %q, want %d", len(got), got, len(in))
	}
	for i := range in {
		if got[i] != in[i] {
			t.Errorf("word %d: shell saw %q, want %q", i, got[i], in[i])
		}
	}
}

// FuzzQuote proves the round trip: whatever the string, a shell sees it as
// exactly one argument with the same bytes. NUL cannot be in an argument at
// all, and the remote command never carries one (see run).
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "'", "''", "$(id)", "a\nb", "\\'", "\xff", "; rm -rf ~"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) || !utf8.ValidString(s) && len(s) > 64 {
			t.Skip()
		}
		q := quote(s)
		if !strings.HasPrefix(q, "'") && !safeWord(s) {
			t.Fatalf("quote(%q) = %s is neither quoted nor safe", s, q)
		}
		got := shellEcho(t, s, "end")
		if len(got) != 2 || got[0] != s || got[1] != "end" {
			t.Fatalf("quote(%q) = %s: shell saw %q", s, q, got)
		}
	})
}
