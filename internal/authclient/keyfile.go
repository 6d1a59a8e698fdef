package authclient

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpm-project/bpm/internal/registry"
)

// maxSecretFile bounds what is read from a key or API key file: both are a
// line or two, and a huge file is a mistake, not a key.
const maxSecretFile = 4 << 10

// keyFile is the JSON key file format. secret_key is the 32-byte secret
// seed in hex: the secp256k1 scalar for ecdsa, the mini secret key for
// sr25519 (what Substrate's tools call the "secret seed").
type keyFile struct {
	KeyType   string `json:"key_type"`
	SecretKey string `json:"secret_key"`
}

// GenerateKeyFile makes a new key of type kt and writes it to path (see
// WriteKeyFile).
func GenerateKeyFile(path string, kt registry.KeyType) (PrivateKey, error) {
	k, err := GenerateKey(kt)
	if err != nil {
		return nil, err
	}
	if err := WriteKeyFile(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// WriteKeyFile writes k as a JSON key file with mode 0600. It never
// overwrites: an existing file may be the only copy of another key.
func WriteKeyFile(path string, k PrivateKey) error {
	b, err := json.Marshal(keyFile{KeyType: KeyTypeName(k.KeyType()), SecretKey: hex.EncodeToString(k.seed())})
	if err != nil {
		return fmt.Errorf("authclient: key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("authclient: key file %s already exists; refusing to overwrite a key", path)
	}
	if err != nil {
		return fmt.Errorf("authclient: key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("authclient: key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("authclient: key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("authclient: key file: %w", err)
	}
	return nil
}

// LoadKeyFile reads a private key file. The file must be a regular file
// readable by its owner only. It is either the JSON written by
// WriteKeyFile or a bare hex secret seed (a leading 0x is allowed, as
// Substrate tools print one); a bare seed says nothing about its type, so
// hint must then name it. A hint that contradicts a JSON file is an error.
func LoadKeyFile(path string, hint registry.KeyType) (PrivateKey, error) {
	b, err := readPrivateFile(path, "key file")
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyFile(b, hint)
	if err != nil {
		return nil, fmt.Errorf("authclient: key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKeyFile parses the contents of a key file (see LoadKeyFile). Its
// errors never quote the contents.
func ParseKeyFile(b []byte, hint registry.KeyType) (PrivateKey, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var kf keyFile
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&kf); err != nil {
			return nil, errors.New("not a valid key file (JSON with key_type and secret_key)")
		}
		if dec.More() {
			return nil, errors.New("trailing data after the JSON key")
		}
		kt, err := ParseKeyType(kf.KeyType)
		if err != nil {
			return nil, errors.New("key_type must be ecdsa or sr25519")
		}
		if hint != registry.KeyTypeUnknown && hint != kt {
			return nil, fmt.Errorf("file holds an %s key, not %s", KeyTypeName(kt), KeyTypeName(hint))
		}
		seed, err := decodeSeed(kf.SecretKey)
		if err != nil {
			return nil, err
		}
		return NewPrivateKey(kt, seed)
	}
	if hint == registry.KeyTypeUnknown {
		return nil, errors.New("a bare hex key does not say its type: give the key type (ecdsa or sr25519)")
	}
	seed, err := decodeSeed(string(b))
	if err != nil {
		return nil, err
	}
	return NewPrivateKey(hint, seed)
}

func decodeSeed(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("secret key must be 32 bytes of hex")
	}
	return b, nil
}

// ReadAPIKeyFile reads an API key from path, which must be readable by its
// owner only ("-" reads standard input instead, for pipes).
func ReadAPIKeyFile(path string, stdin io.Reader) (APIKey, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, maxSecretFile+1))
		if err == nil && len(b) > maxSecretFile {
			err = errors.New("too long")
		}
		if err != nil {
			return APIKey{}, fmt.Errorf("authclient: api key from stdin: %w", err)
		}
	} else if b, err = readPrivateFile(path, "api key file"); err != nil {
		return APIKey{}, err
	}
	k, err := ParseAPIKey(string(b))
	if err != nil {
		from := path
		if path == "-" {
			from = "standard input"
		}
		return APIKey{}, fmt.Errorf("%w (from %s)", err, from)
	}
	return k, nil
}

// readPrivateFile reads a small secret file after checking, on the open
// file itself (no race with a rename), that it is regular and that neither
// group nor others can read or write it.
func readPrivateFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authclient: %s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("authclient: %s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("authclient: %s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("authclient: %s %s is mode %04o: it holds a secret and must be readable by its owner only (chmod 600 %s)",
			what, path, uint32(perm), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("authclient: %s: %w", what, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("authclient: %s %s is too large to be a key", what, path)
	}
	return b, nil
}

// WriteSecretFile writes secret and a newline to path with mode 0600,
// replacing any existing file atomically (a temporary file in the same
// directory, then rename), so a reader never sees a half-written secret and
// an existing file's looser mode is not inherited.
func WriteSecretFile(path string, secret string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("authclient: write %s: is a directory", path)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("authclient: write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("authclient: write %s: %w", path, err)
	}
	// CreateTemp already uses 0600; say so explicitly, it is the point.
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("authclient: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("authclient: write %s: %w", path, err)
	}
	return nil
}
