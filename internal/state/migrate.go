package state

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the schema's history. migrations[i] takes the database from
// user_version i to i+1. Steps are append-only: never edit or reorder one
// that has shipped, add a new step instead, because databases in the field
// have already applied the old ones.
var migrations = []string{
	// 1: instances, their event log, and a small key-value table.
	`
CREATE TABLE instances (
	id             TEXT PRIMARY KEY,
	remote         TEXT NOT NULL,
	provider_type  TEXT NOT NULL,
	blueprint_name TEXT NOT NULL,
	-- Blueprint and service ids are u64 on chain; they are stored as the
	-- int64 with the same bits, which keeps equality (all we query by).
	blueprint_id   INTEGER NOT NULL,
	service_id     INTEGER NOT NULL,
	package_path   TEXT NOT NULL,
	state          TEXT NOT NULL,
	message        TEXT NOT NULL,
	handle         BLOB,
	address        TEXT NOT NULL,
	-- Times are Unix nanoseconds: they sort, compare and scan as integers.
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	terminated_at  INTEGER
) STRICT;

-- list shows live instances in creation order. Terminated rows pile up over
-- the months while live ones stay few, so the live ones get their own index
-- and list never walks the history.
CREATE INDEX instances_live ON instances (created_at, id) WHERE state <> 'terminated';
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_remote ON instances (remote, created_at, id);
CREATE INDEX instances_service ON instances (service_id);

CREATE TABLE events (
	seq         INTEGER PRIMARY KEY,
	instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
	at          INTEGER NOT NULL,
	kind        TEXT NOT NULL,
	message     TEXT NOT NULL
) STRICT;
CREATE INDEX events_instance ON events (instance_id, seq);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT, WITHOUT ROWID;
`,
	// 2: the cost meter's running intervals. One row per stretch an
	// instance was running or degraded, priced at the hourly rate it was
	// estimated at when the stretch began; end_at is NULL while it runs.
	`
CREATE TABLE cost_intervals (
	seq         INTEGER PRIMARY KEY,
	instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
	start_at    INTEGER NOT NULL,
	end_at      INTEGER,
	hourly_usd  REAL NOT NULL
) STRICT;
-- At most one open interval per instance: opening is then idempotent.
CREATE UNIQUE INDEX cost_intervals_open ON cost_intervals (instance_id) WHERE end_at IS NULL;
-- costs reads this month's intervals: the open ones and those ending since.
CREATE INDEX cost_intervals_end ON cost_intervals (end_at);
`,
	// 3: the site of a remote instance: which of the remote's gateways it
	// sits behind (an SSH host, a region); '' is the remote's only one.
	`
ALTER TABLE instances ADD COLUMN site TEXT NOT NULL DEFAULT '';
`,
}

// SchemaVersion is the user_version this bpm brings a database to.
func SchemaVersion() int { return len(migrations) }

// migrate applies the missing steps, each in its own transaction together
// with the user_version bump, so a crash mid-migration leaves the database
// at the last completed step and the next Open resumes from there.
func (s *Store) migrate(ctx context.Context) error {
	// The common case is a database that is already current. Checking that
	// outside a transaction keeps Open from taking the write lock, which
	// would make every open wait for (and delay) a busy writer elsewhere.
	var v int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("state: open %s: read schema version: %w", s.path, err)
	}
	if v == len(migrations) {
		return nil
	}
	for {
		done, err := s.migrateStep(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (s *Store) migrateStep(ctx context.Context) (done bool, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		// Read the version inside the write transaction: another process
		// opening the same file may have migrated while we waited.
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		switch {
		case v > len(migrations):
			return fmt.Errorf("schema version %d, this bpm knows up to %d; upgrade bpm: %w",
				v, len(migrations), ErrNewerSchema)
		case v == len(migrations):
			done = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		// PRAGMA takes no bound parameters; v is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			return fmt.Errorf("migrate to version %d: set version: %w", v+1, err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("state: open %s: %w", s.path, err)
	}
	return done, nil
}
