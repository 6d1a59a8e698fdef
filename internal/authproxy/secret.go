package authproxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

const redacted = "[REDACTED]"

// APIKey is a long-lived API key in clear ("<prefix><id>.<secret>"). It is
// shown to its holder once, at issuance, and stored only as a hash. Its
// String, Format and LogValue are redacted so it cannot reach a log or an
// error message by accident; Reveal is the one deliberate way out.
type APIKey struct{ s string }

// Reveal returns the key in clear, for the one response that hands it over.
func (k APIKey) Reveal() string { return k.s }

// String implements fmt.Stringer, redacted.
func (APIKey) String() string { return redacted }

// Format implements fmt.Formatter, redacted for every verb.
func (APIKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (APIKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// Token is a PASETO access token in clear, redacted like APIKey.
type Token struct{ s string }

// Reveal returns the token in clear.
func (t Token) Reveal() string { return t.s }

// String implements fmt.Stringer, redacted.
func (Token) String() string { return redacted }

// Format implements fmt.Formatter, redacted.
func (Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// TokenKey is the 32-byte PASETO v4.local key. It has no exported field and
// prints redacted.
type TokenKey struct{ k [32]byte }

// NewTokenKey returns a random key.
func NewTokenKey() (*TokenKey, error) {
	var k TokenKey
	if _, err := rand.Read(k.k[:]); err != nil {
		return nil, fmt.Errorf("authproxy: token key: %w", err)
	}
	return &k, nil
}

// TokenKeyFromBytes copies a 32-byte key.
func TokenKeyFromBytes(b []byte) (*TokenKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("authproxy: token key: %d bytes, want 32", len(b))
	}
	var k TokenKey
	copy(k.k[:], b)
	return &k, nil
}

// TokenKeyFromHex parses 64 hex characters (upstream's PASETO_SIGNING_KEY).
func TokenKeyFromHex(s string) (*TokenKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("authproxy: token key: not hex")
	}
	return TokenKeyFromBytes(b)
}

// LoadOrCreateTokenKeyFile reads a raw 32-byte key from path (which must not
// be readable by group or others), or creates one there with mode 0600, as
// upstream's <auth-db>/.paseto_key. Keeping the key across restarts keeps
// issued tokens valid across restarts.
func LoadOrCreateTokenKeyFile(path string) (*TokenKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("authproxy: token key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("authproxy: token key: %s is mode %v, want 0600", path, fi.Mode().Perm())
		}
		return TokenKeyFromBytes(b)
	}
	if !os.IsNotExist(err) {
		return nil, fmt.Errorf("authproxy: token key: %w", err)
	}
	k, err := NewTokenKey()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("authproxy: token key: %w", err)
	}
	if _, err := f.Write(k.k[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("authproxy: token key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("authproxy: token key: %w", err)
	}
	return k, nil
}

// String implements fmt.Stringer, redacted.
func (*TokenKey) String() string { return redacted }

// Format implements fmt.Formatter, redacted.
func (*TokenKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (*TokenKey) LogValue() slog.Value { return slog.StringValue(redacted) }
