package ssh

import "strings"

// quote makes s one word for a POSIX shell, whatever it holds. sshd hands a
// command line to the login shell, so every argument that reaches a remote
// command goes through here: a single-quoted word has no expansions at all,
// and the only character that needs care is the single quote itself, which
// closes the quote, is written escaped, and reopens it.
func quote(s string) string {
	if s == "" {
		return "''"
	}
	if safeWord(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// safeWord reports whether s can be written bare: only characters no shell
// gives a meaning to. Leaving those unquoted keeps commands readable in
// debug logs without any risk.
func safeWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_./:,+=@%", c) >= 0:
		default:
			return false
		}
	}
	// zsh expands a leading '=' (=cmd becomes the command's path).
	return s[0] != '='
}

// command joins args into one shell command line, each argument quoted.
// It is the only way this package builds a remote command from values.
func command(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}
