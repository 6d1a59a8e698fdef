package state

import (
	"context"
	"database/sql"
	"fmt"
)

// GetMeta returns the value stored under key, or an error wrapping
// ErrNotFound. Meta is a small key-value table for settings later features
// need to keep (never secrets: it is stored in clear text).
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.reader.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if err == sql.ErrNoRows {
		return nil, fmt.Errorf("state: get meta %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("state: get meta %q: %w", key, err)
	}
	if v == nil {
		// An empty value was stored; keep it distinguishable from "absent".
		v = []byte{}
	}
	return v, nil
}

// SetMeta stores value under key, replacing any earlier value.
func (s *Store) SetMeta(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("state: set meta: key is empty")
	}
	if value == nil {
		// The column is NOT NULL; nil and empty mean the same here.
		value = []byte{}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: set meta %q: %w", key, err)
	}
	return nil
}

// InsertMeta stores value under key only when the key is absent, atomically
// (one INSERT … ON CONFLICT DO NOTHING), and returns an error wrapping
// ErrExists otherwise. It backs write-if-absent registrations.
func (s *Store) InsertMeta(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return fmt.Errorf("state: insert meta: key is empty")
	}
	if value == nil {
		value = []byte{}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: insert meta %q: %w", key, err)
	}
	return nil
}

// DeleteMeta removes key; removing an absent key is not an error, so
// callers on terminate paths stay idempotent.
func (s *Store) DeleteMeta(ctx context.Context, key string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM meta WHERE key = ?`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: delete meta %q: %w", key, err)
	}
	return nil
}

// MetaEntry is one key and value of the meta table.
type MetaEntry struct {
	Key   string
	Value []byte
}

// ListMeta returns the entries whose key starts with prefix, sorted by key.
func (s *Store) ListMeta(ctx context.Context, prefix string) ([]MetaEntry, error) {
	// substr rather than LIKE: a prefix may hold _ or %, which LIKE would
	// treat as wildcards.
	rows, err := s.reader.QueryContext(ctx,
		`SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key`, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("state: list meta %q: %w", prefix, err)
	}
	defer rows.Close()
	var out []MetaEntry
	for rows.Next() {
		var e MetaEntry
		if err := rows.Scan(&e.Key, &e.Value); err != nil {
			return nil, fmt.Errorf("state: list meta %q: %w", prefix, err)
		}
		if e.Value == nil {
			e.Value = []byte{}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: list meta %q: %w", prefix, err)
	}
	return out, nil
}
