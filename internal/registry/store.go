package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// KV is one stored key and value.
type KV struct {
	Key   string
	Value []byte
}

// Store is the persistence the registry (and the auth proxy's API key table)
// writes through. Keys are short ASCII strings; values are opaque bytes.
// Get returns an error wrapping ErrNotFound for a missing key; Delete of a
// missing key is not an error. List returns the entries whose key starts
// with prefix, sorted by key.
//
// The manager backs it with its SQLite state; MemStore and FileStore serve
// tests and tools.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]KV, error)
}

// PutIfAbsenter is implemented by stores that can write-if-absent
// atomically (SQLite: INSERT … ON CONFLICT DO NOTHING and check the row
// count). It returns an error wrapping ErrExists if the key is present.
type PutIfAbsenter interface {
	PutIfAbsent(ctx context.Context, key string, value []byte) error
}

// MemStore is an in-memory Store.
type MemStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: map[string][]byte{}} }

var (
	_ Store         = (*MemStore)(nil)
	_ PutIfAbsenter = (*MemStore)(nil)
	_ Store         = (*FileStore)(nil)
)

// Get implements Store.
func (s *MemStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("memstore: %s: %w", key, ErrNotFound)
	}
	return slices.Clone(v), nil
}

// Put implements Store.
func (s *MemStore) Put(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = slices.Clone(value)
	return nil
}

// PutIfAbsent implements PutIfAbsenter.
func (s *MemStore) PutIfAbsent(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; ok {
		return fmt.Errorf("memstore: %s: %w", key, ErrExists)
	}
	s.m[key] = slices.Clone(value)
	return nil
}

// Delete implements Store.
func (s *MemStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// List implements Store.
func (s *MemStore) List(_ context.Context, prefix string) ([]KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []KV
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, KV{Key: k, Value: slices.Clone(v)})
		}
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// FileStore is a Store kept in one JSON file (mode 0600), rewritten
// atomically (temp file + rename) on every change. It is for tests and
// small tools, not for the manager's hot paths.
type FileStore struct {
	path string
	mu   sync.Mutex
	mem  *MemStore
}

// OpenFileStore loads path (a missing file is an empty store).
func OpenFileStore(path string) (*FileStore, error) {
	fs := &FileStore{path: path, mem: NewMemStore()}
	b, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return fs, nil
	case err != nil:
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := json.Unmarshal(b, &fs.mem.m); err != nil {
		return nil, fmt.Errorf("filestore: %s: %w", path, err)
	}
	if fs.mem.m == nil {
		fs.mem.m = map[string][]byte{}
	}
	return fs, nil
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	return s.mem.Get(ctx, key)
}

// List implements Store.
func (s *FileStore) List(ctx context.Context, prefix string) ([]KV, error) {
	return s.mem.List(ctx, prefix)
}

// Put implements Store.
func (s *FileStore) Put(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.mem.m[key]
	_ = s.mem.Put(ctx, key, value)
	if err := s.flush(); err != nil {
		if had {
			s.mem.m[key] = old
		} else {
			delete(s.mem.m, key)
		}
		return err
	}
	return nil
}

// Delete implements Store.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.mem.m[key]
	if !had {
		return nil
	}
	_ = s.mem.Delete(ctx, key)
	if err := s.flush(); err != nil {
		s.mem.m[key] = old
		return err
	}
	return nil
}

func (s *FileStore) flush() error {
	s.mem.mu.Lock()
	b, err := json.Marshal(s.mem.m)
	s.mem.mu.Unlock()
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".registry-*")
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("filestore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	return nil
}
