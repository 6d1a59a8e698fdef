package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"filippo.io/age"
)

// FileName is the keystore file inside its directory.
const FileName = "keystore.age"

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrWrongPassphrase = errors.New("wrong passphrase or corrupt keystore")
	ErrInvalidName     = errors.New("invalid name")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateName reports whether name may be used for an entry. Names are
// restricted so they are safe in file names, labels and command lines.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("keystore: %q: %w: use 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit", name, ErrInvalidName)
	}
	return nil
}

// defaultWorkFactor is age's own default (scrypt N = 2^18, about a second):
// the file may be copied off the machine, so guessing must stay expensive.
const defaultWorkFactor = 18

// fileFormat is the plaintext inside the age envelope. The version lets a
// later release change the layout without guessing.
type fileFormat struct {
	Version int               `json:"version"`
	Entries map[string]string `json:"entries"`
}

// Keystore is an open keystore. It is safe for concurrent use, and other
// processes may change the file while it is open: every call notices a
// changed file and re-reads it.
type Keystore struct {
	dir  string
	path string
	pass Passphrase
	// workFactor is the scrypt log2(N) used when writing; tests lower it.
	workFactor int

	mu      sync.Mutex
	entries map[string]string
	loaded  fileStamp // what the file looked like when entries were read
}

// fileStamp identifies one version of the file cheaply, so an unchanged file
// is not decrypted again (scrypt makes each decryption cost about a second).
type fileStamp struct {
	exists bool
	size   int64
	mtime  int64
	ino    uint64
}

// Open opens the keystore in dir, creating dir (mode 0700) when it does not
// exist. A missing keystore file is an empty keystore; the file is created by
// the first Set. An existing file is decrypted now, so a wrong passphrase is
// reported by Open rather than by a later Get.
func Open(dir string, pass Passphrase) (*Keystore, error) {
	if pass.IsZero() {
		return nil, errors.New("keystore: open: empty passphrase")
	}
	if dir == "" {
		return nil, errors.New("keystore: open: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	k := &Keystore{
		dir:        dir,
		path:       filepath.Join(dir, FileName),
		pass:       pass,
		workFactor: defaultWorkFactor,
	}
	unlock, err := lockFile(filepath.Join(dir, ".keystore.lock"), false)
	if err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	defer unlock()
	if err := k.refresh(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the keystore file's path.
func (k *Keystore) Path() string { return k.path }

// Get returns the value stored under name, or an error wrapping ErrNotFound.
func (k *Keystore) Get(name string) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.refreshLocked(false); err != nil {
		return "", err
	}
	v, ok := k.entries[name]
	if !ok {
		return "", fmt.Errorf("keystore: %q: %w", name, ErrNotFound)
	}
	return v, nil
}

// List returns the entry names, sorted. Values are never listed. If the file
// changed and cannot be re-read, List returns the names it last knew.
func (k *Keystore) List() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	_ = k.refreshLocked(false)
	names := make([]string, 0, len(k.entries))
	for n := range k.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Set stores value under name, replacing any previous value, and writes the
// file before returning.
func (k *Keystore) Set(name, value string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return k.update(func(m map[string]string) error {
		m[name] = value
		return nil
	})
}

// Remove deletes name; an error wrapping ErrNotFound when it is absent, so
// `bpm keys rm` can tell the operator about a typo.
func (k *Keystore) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return k.update(func(m map[string]string) error {
		if _, ok := m[name]; !ok {
			return fmt.Errorf("keystore: %q: %w", name, ErrNotFound)
		}
		delete(m, name)
		return nil
	})
}

// update is read-modify-write under the cross-process lock, so concurrent
// writers (a CLI and the manager) never drop each other's entries.
func (k *Keystore) update(change func(map[string]string) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := lockFile(filepath.Join(k.dir, ".keystore.lock"), true)
	if err != nil {
		return fmt.Errorf("keystore: lock: %w", err)
	}
	defer unlock()
	if err := k.refreshLocked(true); err != nil {
		return err
	}
	next := make(map[string]string, len(k.entries)+1)
	for n, v := range k.entries {
		next[n] = v
	}
	if err := change(next); err != nil {
		return err
	}
	if err := k.write(next); err != nil {
		return err
	}
	k.entries = next
	st, err := stamp(k.path)
	if err != nil {
		return fmt.Errorf("keystore: stat: %w", err)
	}
	k.loaded = st
	return nil
}

func (k *Keystore) refresh() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refreshLocked(true)
}

// refreshLocked re-reads the file when it differs from what was loaded.
// Callers hold k.mu. Readers that do not hold the file lock may race with a
// writer's rename, which is harmless: rename is atomic, so they see either
// the old or the new file, never a torn one.
func (k *Keystore) refreshLocked(force bool) error {
	st, err := stamp(k.path)
	if err != nil {
		return fmt.Errorf("keystore: stat: %w", err)
	}
	if !force && k.entries != nil && st == k.loaded {
		return nil
	}
	if !st.exists {
		k.entries = map[string]string{}
		k.loaded = st
		return nil
	}
	entries, err := k.read()
	if err != nil {
		return err
	}
	k.entries = entries
	k.loaded = st
	return nil
}

func (k *Keystore) read() (map[string]string, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return nil, fmt.Errorf("keystore: read: %w", err)
	}
	defer f.Close()
	id, err := age.NewScryptIdentity(k.pass.s)
	if err != nil {
		return nil, fmt.Errorf("keystore: read: %w", err)
	}
	r, err := age.Decrypt(f, id)
	if err != nil {
		return nil, fmt.Errorf("keystore: decrypt %s: %w: %w", k.path, ErrWrongPassphrase, err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		// age authenticates every chunk, so a read error here means the
		// file was altered or truncated after its header.
		return nil, fmt.Errorf("keystore: decrypt %s: %w: %w", k.path, ErrWrongPassphrase, err)
	}
	var ff fileFormat
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ff); err != nil {
		return nil, fmt.Errorf("keystore: decode %s: %w: %w", k.path, ErrWrongPassphrase, err)
	}
	if ff.Version != 1 {
		return nil, fmt.Errorf("keystore: %s has format version %d; this bpm reads version 1", k.path, ff.Version)
	}
	if ff.Entries == nil {
		ff.Entries = map[string]string{}
	}
	return ff.Entries, nil
}

// write replaces the file atomically: a crash leaves either the old or the
// new keystore, never a torn one.
func (k *Keystore) write(entries map[string]string) (err error) {
	plain, err := json.Marshal(fileFormat{Version: 1, Entries: entries})
	if err != nil {
		return fmt.Errorf("keystore: encode: %w", err)
	}
	rcpt, err := age.NewScryptRecipient(k.pass.s)
	if err != nil {
		return fmt.Errorf("keystore: encrypt: %w", err)
	}
	rcpt.SetWorkFactor(k.workFactor)

	// CreateTemp makes the file 0600 from the start, so the ciphertext is
	// never briefly readable by others.
	tmp, err := os.CreateTemp(k.dir, ".keystore-*.tmp")
	if err != nil {
		return fmt.Errorf("keystore: write: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("keystore: write: %w", err)
	}
	w, err := age.Encrypt(tmp, rcpt)
	if err != nil {
		return fmt.Errorf("keystore: encrypt: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("keystore: encrypt: %w", err)
	}
	clear(plain)
	if err := w.Close(); err != nil {
		return fmt.Errorf("keystore: encrypt: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("keystore: write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: write: %w", err)
	}
	if err := os.Rename(tmp.Name(), k.path); err != nil {
		return fmt.Errorf("keystore: write: %w", err)
	}
	// Sync the directory so the rename itself survives a power loss.
	if d, derr := os.Open(k.dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano(), ino: inode(fi)}, nil
}
