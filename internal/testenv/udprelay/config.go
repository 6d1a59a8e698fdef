package udprelay

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as "50ms", so the
// control API is usable with curl.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a Go duration string ("50ms", "1.5s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Impairment is what happens to datagrams in one direction. The zero value
// forwards everything at once.
type Impairment struct {
	// Drop is the probability in [0,1] that a datagram is discarded.
	Drop float64 `json:"drop,omitempty"`
	// Delay holds every datagram this long before it is sent on.
	Delay Duration `json:"delay,omitempty"`
	// Jitter adds a uniformly random extra delay in [0, Jitter) per
	// datagram; datagrams may then overtake each other, as on a real path.
	Jitter Duration `json:"jitter,omitempty"`
	// Duplicate is the probability in [0,1] that a datagram is sent twice.
	Duplicate float64 `json:"duplicate,omitempty"`
	// Reorder is the probability in [0,1] that a datagram is held back and
	// sent right after the next one (or after ReorderTimeout if none comes).
	// At 1 consecutive pairs swap: 2 1 4 3 ...
	Reorder float64 `json:"reorder,omitempty"`
	// Partition discards everything in this direction.
	Partition bool `json:"partition,omitempty"`
}

// Validate reports every invalid field at once.
func (im Impairment) Validate() error {
	var errs []error
	prob := func(name string, p float64) {
		if p < 0 || p > 1 || p != p {
			errs = append(errs, fmt.Errorf("%s must be in [0,1], got %v", name, p))
		}
	}
	prob("drop", im.Drop)
	prob("duplicate", im.Duplicate)
	prob("reorder", im.Reorder)
	if im.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay must not be negative, got %v", time.Duration(im.Delay)))
	}
	if im.Jitter < 0 {
		errs = append(errs, fmt.Errorf("jitter must not be negative, got %v", time.Duration(im.Jitter)))
	}
	return errors.Join(errs...)
}

// Config is the relay's whole run-time configuration.
type Config struct {
	// Upstream is "host:port" of the server; empty in a request keeps the
	// current one. Changing it drops every client session.
	Upstream string `json:"upstream,omitempty"`
	// Up applies to client → upstream datagrams.
	Up Impairment `json:"up"`
	// Down applies to upstream → client datagrams.
	Down Impairment `json:"down"`
}

// Symmetric is a Config with the same impairment in both directions.
func Symmetric(im Impairment) Config { return Config{Up: im, Down: im} }

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if err := c.Up.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("up: %w", err))
	}
	if err := c.Down.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("down: %w", err))
	}
	return errors.Join(errs...)
}

// Direction names one or both directions of the relay.
type Direction string

const (
	// Up is client → upstream.
	Up Direction = "up"
	// Down is upstream → client.
	Down Direction = "down"
	// Both is both directions.
	Both Direction = "both"
)

func (d Direction) valid() bool { return d == Up || d == Down || d == Both }

// DirStats counts what happened in one direction since the last reset.
type DirStats struct {
	Received    uint64 `json:"received"`    // datagrams read
	Forwarded   uint64 `json:"forwarded"`   // datagrams written, duplicates included
	Dropped     uint64 `json:"dropped"`     // discarded by the drop probability
	Partitioned uint64 `json:"partitioned"` // discarded by a partition
	Duplicated  uint64 `json:"duplicated"`  // extra copies sent
	Reordered   uint64 `json:"reordered"`   // held back behind a later datagram
	Errors      uint64 `json:"errors"`      // failed writes (and up datagrams with no upstream)
}

// Stats is the relay's counters.
type Stats struct {
	Up       DirStats `json:"up"`
	Down     DirStats `json:"down"`
	Sessions int      `json:"sessions"` // client addresses currently mapped
}
