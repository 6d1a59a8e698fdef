package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Interval is one stretch an instance ran, as the cost meter records it.
type Interval struct {
	InstanceID string
	Start      time.Time
	End        *time.Time // nil while the instance still runs
	HourlyUSD  float64
}

// OpenInterval starts a running interval for id at at, priced at hourly.
// An interval already open for id is left as it is (and reported false),
// so a repeated "running" never double-counts.
func (s *Store) OpenInterval(ctx context.Context, id string, at time.Time, hourly float64) (bool, error) {
	var opened bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO cost_intervals (instance_id, start_at, hourly_usd)
			VALUES (?, ?, ?) ON CONFLICT (instance_id) WHERE end_at IS NULL DO NOTHING`, id, at.UnixNano(), hourly)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		opened = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("state: open interval %s: %w", id, err)
	}
	return opened, nil
}

// CloseInterval ends id's open interval at at (never before it began);
// with none open it does nothing.
func (s *Store) CloseInterval(ctx context.Context, id string, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE cost_intervals SET end_at = max(start_at, ?)
			WHERE instance_id = ? AND end_at IS NULL`, at.UnixNano(), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: close interval %s: %w", id, err)
	}
	return nil
}

// CloseOpenIntervals ends every open interval at at (never before its
// start) and returns how many it closed. The manager calls it on start for
// intervals a crash left open.
func (s *Store) CloseOpenIntervals(ctx context.Context, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cost_intervals SET end_at = max(start_at, ?) WHERE end_at IS NULL`, at.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: close open intervals: %w", err)
	}
	return int(n), nil
}

// LastRate returns the hourly rate of id's latest interval; ok is false
// when it has none.
func (s *Store) LastRate(ctx context.Context, id string) (float64, bool, error) {
	var r float64
	err := s.reader.QueryRowContext(ctx, `SELECT hourly_usd FROM cost_intervals WHERE instance_id = ?
		ORDER BY seq DESC LIMIT 1`, id).Scan(&r)
	if err == sql.ErrNoRows {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state: last rate %s: %w", id, err)
	}
	return r, true, nil
}

// EachInterval calls fn for every interval still open or ended at or after
// since, in start order: the month-to-date working set of `costs`.
func (s *Store) EachInterval(ctx context.Context, since time.Time, fn func(Interval) error) error {
	rows, err := s.reader.QueryContext(ctx, `SELECT instance_id, start_at, end_at, hourly_usd FROM cost_intervals
		WHERE end_at IS NULL OR end_at >= ? ORDER BY start_at, seq`, since.UnixNano())
	if err != nil {
		return fmt.Errorf("state: intervals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var iv Interval
		var start int64
		var end sql.NullInt64
		if err := rows.Scan(&iv.InstanceID, &start, &end, &iv.HourlyUSD); err != nil {
			return fmt.Errorf("state: intervals: %w", err)
		}
		iv.Start = fromNanos(start)
		if end.Valid {
			e := fromNanos(end.Int64)
			iv.End = &e
		}
		if err := fn(iv); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: intervals: %w", err)
	}
	return nil
}
