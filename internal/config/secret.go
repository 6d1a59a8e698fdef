package config

import (
	"fmt"
	"log/slog"
)

// RedactedText is what every secret prints as.
const RedactedText = "REDACTED"

// Secret is a string-valued credential from a config file: a token, a key, a
// passphrase. It formats, logs and marshals as REDACTED, so a secret cannot
// reach output by accident; code that needs the value calls Reveal, which is
// easy to find in review. Config fields of this type must also carry the tag
// secret:"true", which tells the loader a keystore:NAME value is allowed.
type Secret string

// Reveal returns the secret's value. Call it only where the value is handed to
// the system that needs it, never to build output.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// Format prints REDACTED for every verb (including %#v and %x), or nothing
// for an empty secret so "is it set?" stays answerable.
func (s Secret) Format(f fmt.State, _ rune) {
	if s != "" {
		_, _ = f.Write([]byte(RedactedText))
	}
}

// LogValue keeps the value out of slog output.
func (s Secret) LogValue() slog.Value {
	if s == "" {
		return slog.StringValue("")
	}
	return slog.StringValue(RedactedText)
}

// MarshalText keeps the value out of JSON, YAML and TOML encodings. There is
// deliberately no UnmarshalText: decoders fill the string directly.
func (s Secret) MarshalText() ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return []byte(RedactedText), nil
}
