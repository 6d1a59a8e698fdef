package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/bpm-project/bpm/internal/provider"

	// The pure Go driver keeps bpm a static binary with no cgo toolchain.
	_ "modernc.org/sqlite"
)

// Sentinel errors, checked with errors.Is. ErrNotFound and ErrExists are the
// provider package's own sentinels so callers (and the CLI's exit codes) treat
// "no such instance" the same whichever layer reported it.
var (
	ErrNotFound = provider.ErrNotFound
	ErrExists   = provider.ErrExists
	// ErrNewerSchema means the database was written by a newer bpm; opening
	// it with this one could corrupt what the newer one relies on.
	ErrNewerSchema = errors.New("database schema is newer than this bpm understands")
	// ErrTerminated refuses moving a terminated instance to another state:
	// terminated is final, a new deploy gets a new instance id.
	ErrTerminated = errors.New("instance is terminated")
)

// busyTimeout bounds how long a write waits for another process holding the
// write lock (the CLI and the manager may share the file). Writes here are
// small, so a lock held this long means something is stuck.
const busyTimeout = 10 * time.Second

// Store is the manager's SQLite database. It is safe for concurrent use.
type Store struct {
	path string
	// writer has exactly one connection: SQLite allows one writer at a time,
	// and queueing in database/sql is fair and cheap where SQLite's busy
	// handler sleeps and retries.
	writer *sql.DB
	// reader is a pool of query_only connections; in WAL mode they read a
	// consistent snapshot without waiting for the writer.
	reader *sql.DB
	now    func() time.Time
}

// Open opens the database at path, creating it and its parent directory when
// missing, and brings its schema up to date. A database written by a newer
// bpm is refused with an error wrapping ErrNewerSchema.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("state: create directory for %s: %w", abs, err)
	}
	// Create the file ourselves so it is born 0600: SQLite would create it
	// with 0644 minus umask, and it creates -wal and -shm with the mode of
	// the database file, so getting this one right covers those too.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: create %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("state: create %s: %w", abs, err)
	}
	// A file left by an older tool or copied with wider permissions is
	// tightened before SQLite opens it and derives the journal modes from it.
	if err := restrictPerms(abs); err != nil {
		return nil, err
	}

	s := &Store{path: abs, now: time.Now}
	timeout := fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds())
	s.writer, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {timeout, "foreign_keys(1)", "synchronous(NORMAL)"},
		// BEGIN IMMEDIATE takes the write lock up front. A deferred
		// transaction that reads and then writes can fail with
		// SQLITE_BUSY_SNAPSHOT without ever consulting busy_timeout.
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", abs, err)
	}
	s.writer.SetMaxOpenConns(1)
	// Keep the one connection: reopening re-runs the pragmas and re-reads
	// the schema on every write.
	s.writer.SetMaxIdleConns(1)
	s.writer.SetConnMaxLifetime(0)
	s.writer.SetConnMaxIdleTime(0)

	s.reader, err = sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {timeout, "foreign_keys(1)", "query_only(1)"},
	}))
	if err != nil {
		s.writer.Close()
		return nil, fmt.Errorf("state: open %s: %w", abs, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.reader.SetMaxOpenConns(n)
	s.reader.SetMaxIdleConns(n)

	if err := s.init(ctx); err != nil {
		_ = s.closeDBs()
		return nil, err
	}
	return s, nil
}

// dsn builds a file: URI so that any path (spaces, '?', '#') reaches SQLite
// intact, with the driver's connection parameters as the query.
func dsn(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	return u.String() + "?" + q.Encode()
}

func (s *Store) init(ctx context.Context) error {
	// journal_mode is stored in the file, so setting it once here holds for
	// every connection, including the readers opened later.
	var mode string
	if err := s.writer.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("state: set wal mode on %s: %w", s.path, err)
	}
	if mode != "wal" {
		// Some filesystems (network mounts) cannot do WAL; fail loudly rather
		// than run with a different crash model than the one documented.
		return fmt.Errorf("state: set wal mode on %s: journal mode is %q", s.path, mode)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	// By now -wal and -shm exist; SQLite made them with the database's mode,
	// checked again here because a stale pair from a crash keeps its old mode.
	for _, p := range []string{s.path, s.path + "-wal", s.path + "-shm", s.path + "-journal"} {
		if err := restrictPerms(p); err != nil {
			return err
		}
	}
	return nil
}

// restrictPerms makes sure an existing file is readable by its owner only.
func restrictPerms(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: check permissions of %s: %w", p, err)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("state: restrict permissions of %s: %w", p, err)
		}
	}
	return nil
}

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. Closing is not needed for safety — every
// committed transaction is already in the WAL — but a clean close lets SQLite
// checkpoint and remove the -wal and -shm files.
func (s *Store) Close() error {
	// optimize keeps query plans good as the tables grow; it is cheap and
	// only does work when statistics are stale. Its failure costs nothing
	// but speed, so it does not fail Close.
	_, _ = s.writer.Exec("PRAGMA optimize")
	return s.closeDBs()
}

// closeDBs closes both pools. Open uses it alone on failure, so that a
// refused database (say, from a newer bpm) is not written to on the way out.
func (s *Store) closeDBs() error {
	var errs []error
	if s.reader != nil {
		if err := s.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("state: close readers: %w", err))
		}
	}
	if s.writer != nil {
		if err := s.writer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("state: close writer: %w", err))
		}
	}
	return errors.Join(errs...)
}

// write runs fn in one write transaction and commits it, or rolls it back
// when fn fails.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read runs fn in one read transaction, so that several queries see the same
// snapshot.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A read transaction has nothing to commit; rollback just ends it.
	defer tx.Rollback()
	return fn(tx)
}
