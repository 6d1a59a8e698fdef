package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Event kinds. Kinds are free text so later features can add their own;
// these are the ones bpm itself writes.
const (
	EventState   = "state" // a state transition, written by UpdateInstance
	EventDeploy  = "deploy"
	EventRestart = "restart"
	EventHealth  = "health"
	EventError   = "error"
)

// Event is one entry in an instance's log.
type Event struct {
	Seq        int64 // increases with every event in the database
	InstanceID string
	Time       time.Time
	Kind       string
	Message    string // never a secret
}

// AppendEvent adds an event to the instance's log. An unknown instance fails
// with an error wrapping ErrNotFound.
func (s *Store) AppendEvent(ctx context.Context, id, kind, message string) error {
	if kind == "" {
		return fmt.Errorf("state: append event to %s: kind is empty", id)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return insertEvent(ctx, tx, id, s.now().UTC(), kind, message)
	})
	if err != nil {
		return fmt.Errorf("state: append event to %s: %w", id, err)
	}
	return nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, id string, at time.Time, kind, message string) error {
	// Inserting through EXISTS reports an unknown instance as "0 rows", which
	// maps to ErrNotFound, rather than as a foreign key failure.
	res, err := tx.ExecContext(ctx, `INSERT INTO events (instance_id, at, kind, message)
		SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM instances WHERE id = ?)`,
		id, at.UnixNano(), kind, message, id)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Events returns the instance's most recent limit events, oldest first;
// limit <= 0 returns them all. An unknown instance fails with ErrNotFound.
func (s *Store) Events(ctx context.Context, id string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	var out []Event
	err := s.read(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM instances WHERE id = ?`, id).Scan(&one)
		if err == sql.ErrNoRows {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("select instance: %w", err)
		}
		// Take the newest rows, then put them back in time order.
		rows, err := tx.QueryContext(ctx, `SELECT seq, at, kind, message FROM (
				SELECT seq, at, kind, message FROM events
				WHERE instance_id = ? ORDER BY seq DESC LIMIT ?
			) ORDER BY seq`, id, limit)
		if err != nil {
			return fmt.Errorf("select events: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e := Event{InstanceID: id}
			var at int64
			if err := rows.Scan(&e.Seq, &at, &e.Kind, &e.Message); err != nil {
				return fmt.Errorf("select events: %w", err)
			}
			e.Time = fromNanos(at)
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("select events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: events of %s: %w", id, err)
	}
	return out, nil
}
