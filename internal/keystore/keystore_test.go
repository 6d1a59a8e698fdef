package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openFast opens a keystore with a cheap scrypt work factor so tests do not
// spend a second per write; the format and code path are otherwise the same.
func openFast(t *testing.T, dir, pass string) *Keystore {
	t.Helper()
	p, err := NewPassphrase(pass)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	k.workFactor = 10
	return k
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	k := openFast(t, dir, "correct horse")
	if got := k.List(); len(got) != 0 {
		t.Fatalf("new keystore lists %v", got)
	}
	if err := k.Set("fly-token", "fo1_abc"); err != nil {
		t.Fatal(err)
	}
	if err := k.Set("wg.aws", "multi\nline value with ünïcode"); err != nil {
		t.Fatal(err)
	}
	if err := k.Set("fly-token", "fo1_replaced"); err != nil {
		t.Fatal(err)
	}

	// A second handle reads what the first wrote.
	k2 := openFast(t, dir, "correct horse")
	for name, want := range map[string]string{"fly-token": "fo1_replaced", "wg.aws": "multi\nline value with ünïcode"} {
		got, err := k2.Get(name)
		if err != nil || got != want {
			t.Errorf("Get(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if got, want := k2.List(), []string{"fly-token", "wg.aws"}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}

	if err := k2.Remove("fly-token"); err != nil {
		t.Fatal(err)
	}
	// The first handle notices the other's change without reopening.
	if _, err := k.Get("fly-token"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: err = %v, want ErrNotFound", err)
	}
	if err := k.Remove("fly-token"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of absent name: err = %v, want ErrNotFound", err)
	}
	if _, err := k.Get("never-set"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(never-set): err = %v, want ErrNotFound", err)
	}
}

func TestConcurrentHandlesKeepEachOthersWrites(t *testing.T) {
	dir := t.TempDir()
	a := openFast(t, dir, "pw")
	b := openFast(t, dir, "pw")
	if err := a.Set("one", "1"); err != nil {
		t.Fatal(err)
	}
	// b opened before a wrote; its Set must not drop "one".
	if err := b.Set("two", "2"); err != nil {
		t.Fatal(err)
	}
	if got := openFast(t, dir, "pw").List(); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("List = %v, want [one two]", got)
	}
}

func TestWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	if err := openFast(t, dir, "right").Set("x", "y"); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPassphrase("wrong")
	_, err := Open(dir, p)
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open with wrong passphrase: err = %v, want ErrWrongPassphrase", err)
	}
	if !strings.Contains(err.Error(), "wrong passphrase or corrupt keystore") {
		t.Errorf("error %q does not say wrong passphrase", err)
	}
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := openFast(t, dir, "pw").Set("x", "y"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-5] ^= 0xff // inside the authenticated payload
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPassphrase("pw")
	if _, err := Open(dir, p); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open of corrupted file: err = %v, want ErrWrongPassphrase", err)
	}
}

func TestFileModeAndCiphertext(t *testing.T) {
	dir := t.TempDir()
	k := openFast(t, dir, "pw")
	const secret = "s3cr3t-value-that-must-not-leak"
	if err := k.Set("token", secret); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("keystore file mode = %04o, want 0600", perm)
	}
	data, err := os.ReadFile(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, []byte("token")) {
		t.Error("on-disk keystore contains plaintext")
	}
	if !bytes.HasPrefix(data, []byte("age-encryption.org/v1\n")) {
		t.Error("on-disk keystore is not an age file")
	}
	// No temp files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("leftover temp file %s", e.Name())
		}
	}
}

func TestNameValidation(t *testing.T) {
	k := openFast(t, t.TempDir(), "pw")
	good := []string{"a", "A", "0", "fly-token", "wg.aws_key", strings.Repeat("a", 128)}
	bad := []string{"", "-x", ".x", "_x", "a b", "a/b", "ä", "a=b", strings.Repeat("a", 129), "a\n"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", n, err)
		}
		if err := k.Set(n, "v"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Set(%q) = %v, want ErrInvalidName", n, err)
		}
		if _, err := k.Get(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}

func TestPassphraseFromEnv(t *testing.T) {
	t.Run("neither set", func(t *testing.T) {
		t.Setenv(EnvPassphrase, "")
		t.Setenv(EnvKeyFile, "")
		_, err := PassphraseFromEnv()
		if !errors.Is(err, ErrNoPassphrase) {
			t.Fatalf("err = %v, want ErrNoPassphrase", err)
		}
		for _, v := range []string{EnvPassphrase, EnvKeyFile} {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("error %q does not name %s", err, v)
			}
		}
	})
	t.Run("env wins", func(t *testing.T) {
		t.Setenv(EnvPassphrase, "from-env")
		t.Setenv(EnvKeyFile, "/nonexistent")
		p, err := PassphraseFromEnv()
		if err != nil || p.s != "from-env" {
			t.Fatalf("got %q, %v", p.s, err)
		}
	})
	t.Run("key file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvPassphrase, "")
		t.Setenv(EnvKeyFile, path)
		p, err := PassphraseFromEnv()
		if err != nil || p.s != "from-file" {
			t.Fatalf("got %q, %v", p.s, err)
		}
	})
}

func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o644, false},
	} {
		path := filepath.Join(dir, fmt.Sprintf("key-%04o", tc.mode))
		if err := os.WriteFile(path, []byte("pw"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(path)
		if tc.ok && err != nil {
			t.Errorf("mode %04o: %v", tc.mode, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("mode %04o: accepted a key file others can read", tc.mode)
			} else if !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("mode %04o: error %q does not say how to fix it", tc.mode, err)
			}
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(empty); err == nil {
		t.Error("empty key file accepted")
	}
	if _, err := ReadKeyFile(dir); err == nil {
		t.Error("directory accepted as key file")
	}
}

func TestPassphraseNeverPrints(t *testing.T) {
	p, _ := NewPassphrase("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pass", p)
	for _, s := range []string{
		fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q %x", p, p, p, p, p, p),
		fmt.Sprintf("%+v", struct{ P Passphrase }{p}), buf.String(),
	} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("passphrase leaked: %s", s)
		}
	}
	if _, err := NewPassphrase(""); err == nil {
		t.Error("empty passphrase accepted")
	}
}
