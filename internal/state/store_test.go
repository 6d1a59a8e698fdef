package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "bpm", "state.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newInst(id string) Instance {
	return Instance{
		ID:            id,
		Remote:        "local",
		ProviderType:  "local",
		BlueprintName: "echo",
		BlueprintID:   7,
		ServiceID:     42,
		PackagePath:   "/srv/echo",
	}
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	// A write makes sure the WAL is in use and both side files exist.
	if err := s.CreateInstance(ctx, newInst("bp-perm")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode = %o, want 700", got)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %o, want 600", filepath.Base(p), got)
		}
	}

	var mode string
	if err := s.reader.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	// Per-connection pragmas must hold on every connection, readers included.
	for name, db := range map[string]*sql.DB{"writer": s.writer, "reader": s.reader} {
		var fk, busy, sync int
		if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Errorf("%s foreign_keys = %d, %v; want 1", name, fk, err)
		}
		if err := db.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != int(busyTimeout.Milliseconds()) {
			t.Errorf("%s busy_timeout = %d, %v", name, busy, err)
		}
		if name == "writer" {
			if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
				t.Errorf("writer synchronous = %d, %v; want 1 (NORMAL)", sync, err)
			}
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to umask; force the loose mode.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %o, want 600", got)
	}
}

func TestOpenOddPath(t *testing.T) {
	// The path goes into a file: URI; characters that mean something in a
	// URI must not change which file is opened.
	path := filepath.Join(t.TempDir(), "we ird?x=1#frag%20", "state.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateInstance(ctx, newInst("bp-keep")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if _, err := s.GetInstance(ctx, "bp-keep"); err != nil {
			t.Errorf("reopen %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := userVersion(t, path); got != SchemaVersion() {
		t.Errorf("user_version = %d, want %d", got, SchemaVersion())
	}
}

func TestMigrateExistingEmptyDatabase(t *testing.T) {
	// A file that exists but has no schema yet (user_version 0) is migrated
	// in place rather than refused or replaced.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := userVersion(t, path); got != SchemaVersion() {
		t.Errorf("user_version = %d, want %d", got, SchemaVersion())
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A step whose first statement works and second fails must leave
	// nothing of itself behind, and the version where it was.
	saved := migrations
	migrations = append(slices.Clip(saved), "CREATE TABLE half (a INTEGER); SELECT nonsense FROM nowhere;")
	defer func() { migrations = saved }()
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("Open with a broken migration succeeded")
	}
	if got := userVersion(t, path); got != len(saved) {
		t.Errorf("user_version = %d, want %d", got, len(saved))
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'half'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("table from the failed step survived")
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, path)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("Open = %v, want ErrNewerSchema", err)
	}
	t.Logf("error reads: %v", err)
	// Refusing must not have touched the version.
	if got := userVersion(t, path); got != SchemaVersion()+1 {
		t.Errorf("user_version = %d after refusal, want %d", got, SchemaVersion()+1)
	}
}

func TestConcurrentWritersOneStore(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := NewInstanceID()
				if err := s.CreateInstance(ctx, newInst(id)); err != nil {
					errs <- err
					continue
				}
				st := provider.StateRunning
				if _, err := s.UpdateInstance(ctx, id, Update{State: &st}); err != nil {
					errs <- err
				}
				if err := s.AppendEvent(ctx, id, EventHealth, "ok"); err != nil {
					errs <- err
				}
				// Readers run alongside the writers.
				if _, err := s.ListInstances(ctx, Filter{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.ListInstances(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers*each {
		t.Errorf("listed %d instances, want %d", len(list), workers*each)
	}
}

func TestConcurrentWritersTwoStores(t *testing.T) {
	// Two Stores on one file stand for two processes (the CLI and the
	// manager): their writes contend for SQLite's lock, which BEGIN
	// IMMEDIATE and busy_timeout must turn into waiting, not SQLITE_BUSY.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*each*2)
	for _, s := range stores {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					id := NewInstanceID()
					if err := s.CreateInstance(ctx, newInst(id)); err != nil {
						errs <- err
						continue
					}
					msg := "starting"
					if _, err := s.UpdateInstance(ctx, id, Update{Message: &msg}); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := stores[0].ListInstances(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2*workers*each {
		t.Errorf("listed %d instances, want %d", len(list), 2*workers*each)
	}
}

func TestContextCancelled(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateInstance(ctx, newInst("bp-ctx")); err == nil {
		t.Fatal("CreateInstance with a cancelled context succeeded")
	}
	// The cancelled write left nothing behind and the store still works.
	if _, err := s.GetInstance(context.Background(), "bp-ctx"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetInstance = %v, want ErrNotFound", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := s.CreateInstance(ctx2, newInst("bp-ctx")); err != nil {
		t.Errorf("CreateInstance after cancellation: %v", err)
	}
}

// TestMigrateKeepsRowsFromVersion2: a database written before sites
// existed (user_version 2) gains the column with every row's site empty,
// the remote's only gateway, and its rows intact.
func TestMigrateKeepsRowsFromVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO instances (id, remote, provider_type, blueprint_name, blueprint_id, service_id,
		package_path, state, message, handle, address, created_at, updated_at)
		VALUES ('bp-0000000001', 'homelab', 'ssh', 'echo', 1, 1, '/p', 'running', '', NULL, '127.0.0.1:8080', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.GetInstance(ctx, "bp-0000000001")
	if err != nil || in.Remote != "homelab" || in.Address != "127.0.0.1:8080" || in.Site != "" {
		t.Fatalf("row after migration: %+v, %v", in, err)
	}
	site := "h1"
	if in, err = s.UpdateInstance(ctx, in.ID, Update{Site: &site}); err != nil || in.Site != "h1" {
		t.Fatalf("update site: %+v, %v", in, err)
	}
}
