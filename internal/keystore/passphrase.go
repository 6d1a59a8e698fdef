package keystore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// The environment variables PassphraseFromEnv reads.
const (
	EnvPassphrase = "BPM_KEYSTORE_PASSPHRASE"
	EnvKeyFile    = "BPM_KEYSTORE_KEY_FILE"
)

// ErrNoPassphrase is returned by PassphraseFromEnv when neither variable is set.
var ErrNoPassphrase = errors.New("no keystore passphrase: set " + EnvPassphrase + " or point " + EnvKeyFile + " at a file (mode 0600) holding it")

// Passphrase unlocks a keystore. It deliberately has no method that returns
// its text except the unexported one the keystore uses, and it formats and
// logs as REDACTED, so it cannot end up in output by accident.
type Passphrase struct {
	s string
}

// NewPassphrase wraps a passphrase; an empty one is refused because it would
// encrypt the keystore with a key anyone can guess.
func NewPassphrase(s string) (Passphrase, error) {
	if s == "" {
		return Passphrase{}, errors.New("keystore: empty passphrase")
	}
	return Passphrase{s: s}, nil
}

// IsZero reports whether p holds no passphrase.
func (p Passphrase) IsZero() bool { return p.s == "" }

// Format prints REDACTED for every verb, including %#v and %+v.
func (p Passphrase) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("REDACTED")) }

// LogValue keeps the passphrase out of slog output.
func (p Passphrase) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalText keeps the passphrase out of JSON, YAML and TOML encodings.
func (p Passphrase) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// PassphraseFromEnv reads the passphrase from BPM_KEYSTORE_PASSPHRASE, or
// else from the key file named by BPM_KEYSTORE_KEY_FILE. An empty variable
// counts as unset.
func PassphraseFromEnv() (Passphrase, error) {
	if s := os.Getenv(EnvPassphrase); s != "" {
		return NewPassphrase(s)
	}
	if path := os.Getenv(EnvKeyFile); path != "" {
		return ReadKeyFile(path)
	}
	return Passphrase{}, ErrNoPassphrase
}

// ReadKeyFile reads a passphrase from a file. The file must be a regular file
// with no permission bits for group or others: a passphrase that other local
// users can read protects nothing. One trailing newline is dropped, since
// `echo secret > file` adds it.
func ReadKeyFile(path string) (Passphrase, error) {
	f, err := os.Open(path)
	if err != nil {
		return Passphrase{}, fmt.Errorf("keystore: key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the check and the read see the
	// same file even if the path is swapped in between.
	fi, err := f.Stat()
	if err != nil {
		return Passphrase{}, fmt.Errorf("keystore: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Passphrase{}, fmt.Errorf("keystore: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Passphrase{}, fmt.Errorf("keystore: key file %s has mode %04o, which lets group or others read or change it; run: chmod 600 %s", path, perm, path)
	}
	const maxKeyFile = 64 << 10 // a passphrase, not a document
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return Passphrase{}, fmt.Errorf("keystore: key file %s: %w", path, err)
	}
	if len(buf) > maxKeyFile {
		return Passphrase{}, fmt.Errorf("keystore: key file %s is larger than %d bytes", path, maxKeyFile)
	}
	s := string(buf)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return Passphrase{}, fmt.Errorf("keystore: key file %s is empty", path)
	}
	return Passphrase{s: s}, nil
}
