package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
)

// Instance is the manager's record of one instance.
type Instance struct {
	ID            string // bp-<random>, see NewInstanceID
	Remote        string // the remote's name in config; "local" for the default
	ProviderType  string // the provider's registry name
	BlueprintName string
	BlueprintID   uint64
	ServiceID     uint64
	PackagePath   string
	State         provider.State
	// Message is the human-readable reason for the state; never a secret.
	Message string
	// Handle is the provider's opaque record of the instance. It is stored in
	// clear text, so providers must not put secrets in it.
	Handle  provider.Handle
	Address string // host:port where the instance answers, when known
	// Site is which of its remote's gateways the instance sits behind (see
	// provider.Sited); "" for the remote's only one. Set before the tunnel
	// is established, and never changed after.
	Site         string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	TerminatedAt *time.Time // set once the instance reaches StateTerminated
}

// Update changes some fields of an instance; nil fields are left alone.
type Update struct {
	State   *provider.State
	Message *string
	Handle  *provider.Handle
	Address *string
	Site    *string
}

// Filter selects instances for ListInstances. The zero Filter lists every
// instance that is not terminated.
type Filter struct {
	Remote string // only this remote when set
	// States, when set, is exactly the set of states listed, terminated
	// included if named; IncludeTerminated is then ignored.
	States []provider.State
	// IncludeTerminated lists terminated instances too when States is empty.
	IncludeTerminated bool
	ServiceID         *uint64 // only instances of this service when set
}

// idEncoding is base32hex in lower case: digits and a–v, so ids are valid in
// DNS labels, Kubernetes names, container names and systemd unit names.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// idLen is the number of random characters: 50 bits, so collisions between
// one operator's instances are out of reach, while names stay short.
const idLen = 10

// NewInstanceID returns a fresh random instance id: "bp-" and 10 lowercase
// base32hex characters from crypto/rand.
func NewInstanceID() string {
	var b [7]byte // 56 bits encode to 12 characters; the first 10 are kept
	// crypto/rand.Read never fails on supported platforms (it panics
	// instead), so there is no error to hand back.
	_, _ = rand.Read(b[:])
	return "bp-" + idEncoding.EncodeToString(b[:])[:idLen]
}

// ValidInstanceID reports whether id can name an instance: "bp-" followed by
// 1 to 40 lowercase letters or digits. It is looser than NewInstanceID's
// output so hand-made ids in tests and older records stay usable, and strict
// enough that every provider can derive resource names from it.
func ValidInstanceID(id string) bool {
	rest, ok := strings.CutPrefix(id, "bp-")
	if !ok || len(rest) == 0 || len(rest) > 40 {
		return false
	}
	for _, c := range rest {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

const instanceColumns = `id, remote, provider_type, blueprint_name, blueprint_id, service_id,
	package_path, state, message, handle, address, created_at, updated_at, terminated_at, site`

// CreateInstance records a new instance. This is the intent row, written
// before any side effect: once it returns, the instance survives a crash.
// An empty State means StatePending; zero times mean now. A duplicate id
// fails with an error wrapping ErrExists.
func (s *Store) CreateInstance(ctx context.Context, inst Instance) error {
	if err := validateNew(&inst); err != nil {
		return fmt.Errorf("state: create %s: %w", inst.ID, err)
	}
	now := s.now().UTC()
	if inst.CreatedAt.IsZero() {
		inst.CreatedAt = now
	}
	if inst.UpdatedAt.IsZero() {
		inst.UpdatedAt = inst.CreatedAt
	}
	if inst.State == provider.StateTerminated && inst.TerminatedAt == nil {
		inst.TerminatedAt = &inst.UpdatedAt
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// ON CONFLICT DO NOTHING turns a duplicate into "0 rows" instead of a
		// driver-specific constraint error.
		res, err := tx.ExecContext(ctx, `INSERT INTO instances (`+instanceColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			inst.ID, inst.Remote, inst.ProviderType, inst.BlueprintName,
			int64(inst.BlueprintID), int64(inst.ServiceID), inst.PackagePath,
			string(inst.State), inst.Message, []byte(inst.Handle), inst.Address,
			inst.CreatedAt.UnixNano(), inst.UpdatedAt.UnixNano(), nanos(inst.TerminatedAt), inst.Site)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert: %w", err)
		} else if n == 0 {
			return ErrExists
		}
		return insertEvent(ctx, tx, inst.ID, inst.CreatedAt, EventState, "created "+string(inst.State))
	})
	if err != nil {
		return fmt.Errorf("state: create %s: %w", inst.ID, err)
	}
	return nil
}

func validateNew(inst *Instance) error {
	if !ValidInstanceID(inst.ID) {
		return fmt.Errorf("invalid instance id %q: want bp- and lowercase letters or digits", inst.ID)
	}
	if inst.Remote == "" {
		return fmt.Errorf("remote is empty")
	}
	if inst.ProviderType == "" {
		return fmt.Errorf("provider type is empty")
	}
	if inst.State == "" {
		inst.State = provider.StatePending
	}
	if !inst.State.Valid() {
		return fmt.Errorf("invalid state %q", inst.State)
	}
	return nil
}

// GetInstance returns the instance with id, or an error wrapping ErrNotFound.
func (s *Store) GetInstance(ctx context.Context, id string) (Instance, error) {
	inst, err := getInstance(ctx, s.reader, id)
	if err != nil {
		return Instance{}, fmt.Errorf("state: get %s: %w", id, err)
	}
	return inst, nil
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func getInstance(ctx context.Context, q queryer, id string) (Instance, error) {
	// Query rather than QueryRow: Row.Scan refuses the RawBytes the shared
	// row decoder uses for the handle.
	rows, err := q.QueryContext(ctx, `SELECT `+instanceColumns+` FROM instances WHERE id = ?`, id)
	if err != nil {
		return Instance{}, fmt.Errorf("select: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Instance{}, fmt.Errorf("select: %w", err)
		}
		return Instance{}, ErrNotFound
	}
	inst, err := newRowDest().scan(rows)
	if err != nil {
		return Instance{}, fmt.Errorf("select: %w", err)
	}
	return inst, nil
}

// UpdateInstance applies u to the instance with id and returns the result. A
// change of state is recorded as a "state" event in the same transaction;
// reaching StateTerminated sets TerminatedAt; leaving it is refused with
// ErrTerminated. An unknown id fails with ErrNotFound.
func (s *Store) UpdateInstance(ctx context.Context, id string, u Update) (Instance, error) {
	if u.State != nil && !u.State.Valid() {
		return Instance{}, fmt.Errorf("state: update %s: invalid state %q", id, *u.State)
	}
	var out Instance
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := getInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		if u == (Update{}) {
			out = cur
			return nil
		}
		now := s.now().UTC()
		next := cur
		next.UpdatedAt = now
		if u.Message != nil {
			next.Message = *u.Message
		}
		if u.Handle != nil {
			next.Handle = *u.Handle
		}
		if u.Address != nil {
			next.Address = *u.Address
		}
		if u.Site != nil {
			next.Site = *u.Site
		}
		changed := u.State != nil && *u.State != cur.State
		if changed {
			if cur.State.Final() {
				return fmt.Errorf("move to %s: %w", *u.State, ErrTerminated)
			}
			next.State = *u.State
			if next.State == provider.StateTerminated {
				next.TerminatedAt = &now
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE instances
			SET state = ?, message = ?, handle = ?, address = ?, site = ?, updated_at = ?, terminated_at = ?
			WHERE id = ?`,
			string(next.State), next.Message, []byte(next.Handle), next.Address, next.Site,
			now.UnixNano(), nanos(next.TerminatedAt), id)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if changed {
			msg := string(cur.State) + " -> " + string(next.State)
			if u.Message != nil && *u.Message != "" {
				msg += ": " + *u.Message
			}
			if err := insertEvent(ctx, tx, id, now, EventState, msg); err != nil {
				return err
			}
		}
		out = next
		return nil
	})
	if err != nil {
		return Instance{}, fmt.Errorf("state: update %s: %w", id, err)
	}
	return out, nil
}

// ListInstances returns the instances f selects, oldest first (by creation
// time, then id). Listing 10,000 rows costs about 25 ms of CPU, two thirds of
// it the driver decoding 14 columns a row; see BenchmarkListInstances10k.
func (s *Store) ListInstances(ctx context.Context, f Filter) ([]Instance, error) {
	var out []Instance
	err := s.eachInstance(ctx, f, func(n int) { out = make([]Instance, 0, n) }, func(inst Instance) error {
		out = append(out, inst)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: list: %w", err)
	}
	return out, nil
}

// EachInstance calls fn for every instance matching f, in ListInstances'
// order, while the rows are read: a caller that streams them (the manager's
// list API) overlaps its own work with the scan instead of waiting for all
// of it. An error from fn stops the scan and is returned. fn must not call
// back into the Store.
func (s *Store) EachInstance(ctx context.Context, f Filter, fn func(Instance) error) error {
	if err := s.eachInstance(ctx, f, nil, fn); err != nil {
		return fmt.Errorf("state: list: %w", err)
	}
	return nil
}

// eachInstance scans the instances matching f. When size is given it is
// first told how many rows will follow: counting costs an index walk but
// spares growing a result slice by doubling, which was a fifth of listing
// 10,000 instances.
func (s *Store) eachInstance(ctx context.Context, f Filter, size func(int), fn func(Instance) error) error {
	for _, st := range f.States {
		if !st.Valid() {
			return fmt.Errorf("invalid state %q", st)
		}
	}
	q, args := listQuery(f)
	return s.read(ctx, func(tx *sql.Tx) error {
		if size != nil {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM ("+q+")", args...).Scan(&n); err != nil {
				return fmt.Errorf("count: %w", err)
			}
			size(n)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("select: %w", err)
		}
		defer rows.Close()
		d := newRowDest()
		for rows.Next() {
			inst, err := d.scan(rows)
			if err != nil {
				return fmt.Errorf("select: %w", err)
			}
			if err := fn(inst); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("select: %w", err)
		}
		return nil
	})
}

// listQuery builds the SELECT for f; f.States must be valid.
func listQuery(f Filter) (string, []any) {
	var (
		where []string
		args  []any
	)
	switch {
	case len(f.States) > 0:
		marks := make([]string, len(f.States))
		for i, st := range f.States {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(marks, ", ")+")")
	case !f.IncludeTerminated:
		// A literal, not a parameter: SQLite uses the partial index
		// instances_live only when the query repeats its WHERE term verbatim.
		where = append(where, "state <> 'terminated'")
	}
	if f.Remote != "" {
		where = append(where, "remote = ?")
		args = append(args, f.Remote)
	}
	if f.ServiceID != nil {
		where = append(where, "service_id = ?")
		args = append(args, int64(*f.ServiceID))
	}
	q := `SELECT ` + instanceColumns + ` FROM instances`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q + " ORDER BY created_at, id", args
}

type scanner interface{ Scan(dest ...any) error }

// rowDest holds the scan destinations for one instance row. ListInstances
// reuses one for every row: fresh locals handed to Scan's ...any all move to
// the heap, which for 10,000 rows was a third of a list's allocations.
// Integers are scanned into interfaces because database/sql converts an
// int64 into *int64 by reflection but into *any by plain assignment, and a
// list does that 40,000 times.
type rowDest struct {
	inst        Instance
	state       string
	blueprintID any
	service     any
	created     any
	updated     any
	terminated  any
	// handle is only valid until the next Scan; scan copies it.
	handle sql.RawBytes
	ptrs   []any
}

func newRowDest() *rowDest {
	d := &rowDest{}
	d.ptrs = []any{&d.inst.ID, &d.inst.Remote, &d.inst.ProviderType, &d.inst.BlueprintName,
		&d.blueprintID, &d.service, &d.inst.PackagePath, &d.state, &d.inst.Message, &d.handle,
		&d.inst.Address, &d.created, &d.updated, &d.terminated, &d.inst.Site}
	return d
}

func (d *rowDest) scan(r scanner) (Instance, error) {
	if err := r.Scan(d.ptrs...); err != nil {
		return Instance{}, err
	}
	inst := d.inst
	var ok [4]bool
	var bp, svc, created, updated int64
	bp, ok[0] = d.blueprintID.(int64)
	svc, ok[1] = d.service.(int64)
	created, ok[2] = d.created.(int64)
	updated, ok[3] = d.updated.(int64)
	if ok != [4]bool{true, true, true, true} {
		// STRICT tables make this unreachable short of a hand-edited file.
		return Instance{}, fmt.Errorf("instance %s: integer column holds a non-integer", inst.ID)
	}
	inst.BlueprintID = uint64(bp)
	inst.ServiceID = uint64(svc)
	inst.State = provider.State(d.state)
	if len(d.handle) > 0 {
		inst.Handle = provider.Handle(bytes.Clone(d.handle))
	}
	inst.CreatedAt = fromNanos(created)
	inst.UpdatedAt = fromNanos(updated)
	switch v := d.terminated.(type) {
	case nil:
	case int64:
		t := fromNanos(v)
		inst.TerminatedAt = &t
	default:
		return Instance{}, fmt.Errorf("instance %s: terminated_at holds %T", inst.ID, v)
	}
	return inst, nil
}

func nanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
