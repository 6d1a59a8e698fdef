package authclient

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

const redacted = "[REDACTED]"

// APIKey is a long-lived API key ("<prefix><id>.<secret>"). It cannot be
// printed or logged by accident; Reveal is the one deliberate way out.
type APIKey struct{ s string }

// ParseAPIKey checks that s looks like an API key (surrounding whitespace,
// such as the newline of a key file, is dropped). It refuses an access token
// given where a key belongs, since the proxy would only answer 400.
func ParseAPIKey(s string) (APIKey, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return APIKey{}, errors.New("authclient: api key: empty")
	case len(s) > 1024:
		return APIKey{}, errors.New("authclient: api key: too long")
	case strings.HasPrefix(s, "v4.local."):
		return APIKey{}, errors.New("authclient: api key: this is an access token, not an API key")
	case !strings.Contains(s, "."):
		return APIKey{}, errors.New("authclient: api key: not of the form <prefix><id>.<secret>")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			// Never echo the value: it may be a real key with a typo.
			return APIKey{}, errors.New("authclient: api key: contains spaces or non-printable bytes")
		}
	}
	return APIKey{s: s}, nil
}

// Reveal returns the key in clear.
func (k APIKey) Reveal() string { return k.s }

// ID returns the key id (the text before the first "."). It is not secret:
// the proxy logs it, and it names the key for revocation.
func (k APIKey) ID() string {
	id, _, _ := strings.Cut(k.s, ".")
	return id
}

// IsZero reports whether k is the zero APIKey.
func (k APIKey) IsZero() bool { return k.s == "" }

// String implements fmt.Stringer, redacted.
func (APIKey) String() string { return redacted }

// Format implements fmt.Formatter, redacted for every verb (%#v included).
func (APIKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (APIKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// Token is a short-lived access token ("v4.local.…"), redacted like APIKey.
type Token struct{ s string }

// Reveal returns the token in clear.
func (t Token) Reveal() string { return t.s }

// String implements fmt.Stringer, redacted.
func (Token) String() string { return redacted }

// Format implements fmt.Formatter, redacted.
func (Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }
