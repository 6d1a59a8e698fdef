package tunnel

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeyLen is the length of a WireGuard key in bytes.
const KeyLen = 32

// redacted is what a private key shows wherever it could be printed.
const redacted = "REDACTED"

// PrivateKey is a curve25519 private key. It deliberately has no String
// method: fmt, slog and encoding all print "REDACTED", so a key that ends up
// in a log line or an API reply by mistake leaks nothing. Reveal is the one
// way to get the encoded key, and its name makes every use easy to review.
//
// The bytes sit behind a pointer so that even reflection-based printing of a
// struct holding the key in an unexported field (where fmt cannot call
// Format) shows an address, not the key. The pointed-to array is never
// written after construction, so copies may share it.
type PrivateKey struct{ k *[KeyLen]byte }

// PublicKey is a curve25519 public key; it is not secret and prints in wg's
// base64 form.
type PublicKey struct{ k [KeyLen]byte }

// GeneratePrivateKey returns a new random private key, clamped as wg genkey
// does so the stored form is identical to what the standard tools produce.
func GeneratePrivateKey() (PrivateKey, error) {
	var b [KeyLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("tunnel: generate private key: %w", err)
	}
	b[0] &= 248
	b[31] = (b[31] & 127) | 64
	return PrivateKey{k: &b}, nil
}

// ParsePrivateKey decodes a private key in wg's base64 form.
func ParsePrivateKey(s string) (PrivateKey, error) {
	b, err := decodeKey(s)
	if err != nil {
		// Never echo the input: it may be a real key with one typo.
		return PrivateKey{}, fmt.Errorf("tunnel: parse private key: %w", err)
	}
	return PrivateKey{k: &b}, nil
}

// ParsePublicKey decodes a public key in wg's base64 form.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := decodeKey(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("tunnel: parse public key %q: %w", truncate(s, 60), err)
	}
	return PublicKey{k: b}, nil
}

func decodeKey(s string) ([KeyLen]byte, error) {
	var out [KeyLen]byte
	s = strings.TrimSpace(s)
	if s == "" {
		return out, errors.New("empty key")
	}
	if len(s) != base64.StdEncoding.EncodedLen(KeyLen) {
		return out, fmt.Errorf("want %d characters of base64 (as printed by `wg genkey`), got %d",
			base64.StdEncoding.EncodedLen(KeyLen), len(s))
	}
	n, err := base64.StdEncoding.Strict().Decode(out[:], []byte(s))
	if err != nil {
		return out, fmt.Errorf("not valid base64: %w", err)
	}
	if n != KeyLen {
		return out, fmt.Errorf("decodes to %d bytes, want %d", n, KeyLen)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// IsZero reports whether k is unset.
func (k PrivateKey) IsZero() bool { return k.k == nil }

// bytes returns the key material, all zeros for the zero key.
func (k PrivateKey) bytes() *[KeyLen]byte {
	if k.k == nil {
		return new([KeyLen]byte)
	}
	return k.k
}

// Equal compares two private keys in constant time.
func (k PrivateKey) Equal(o PrivateKey) bool {
	return subtle.ConstantTimeCompare(k.bytes()[:], o.bytes()[:]) == 1
}

// Public derives the public key.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	curve25519.ScalarBaseMult(&p.k, k.bytes())
	return p
}

// Reveal returns the key in wg's base64 form. Only code that must hand the
// key to WireGuard or write a config file for its owner calls it.
func (k PrivateKey) Reveal() string { return base64.StdEncoding.EncodeToString(k.bytes()[:]) }

// hex is the UAPI form; unexported so it cannot leak through the API.
func (k PrivateKey) hex() string { return hex.EncodeToString(k.bytes()[:]) }

// Format makes every fmt verb (%v, %s, %+v, %#v, %x, %q) print REDACTED.
func (PrivateKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue keeps the key out of slog output.
func (PrivateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the key out of JSON, YAML and TOML output.
func (PrivateKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// GoString covers %#v through paths that bypass Format.
func (PrivateKey) GoString() string { return redacted }

// IsZero reports whether k is unset.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// Equal compares two public keys in constant time. Public keys are not
// secret, but they are compared against attacker-supplied values in the
// handshake path's neighbourhood, and constant time costs nothing here.
func (k PublicKey) Equal(o PublicKey) bool {
	return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1
}

// String returns the key in wg's base64 form.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k.k[:]) }

// MarshalText encodes the key in wg's base64 form.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes the key from wg's base64 form.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

func (k PublicKey) hex() string { return hex.EncodeToString(k.k[:]) }

func publicKeyFromHex(s string) (PublicKey, error) {
	var p PublicKey
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != KeyLen {
		return p, fmt.Errorf("tunnel: bad public key %q in device state", s)
	}
	copy(p.k[:], b)
	return p, nil
}
