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
