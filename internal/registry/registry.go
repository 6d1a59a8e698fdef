package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: no record (or no stored value) under that key.
	ErrNotFound = errors.New("registry: not found")
	// ErrExists: a write-if-absent found a record already there.
	ErrExists = errors.New("registry: already exists")
)

// KeyType is the owner key algorithm, with the numbering of the bridge's
// ServiceOwner.KeyType enum (and the auth layer's BN254 value 3).
type KeyType uint32

// Key types on the wire.
const (
	KeyTypeUnknown  KeyType = 0
	KeyTypeEcdsa    KeyType = 1
	KeyTypeSr25519  KeyType = 2
	KeyTypeBn254Bls KeyType = 3
)

// String returns the auth proxy's JSON spelling of the key type.
func (k KeyType) String() string {
	switch k {
	case KeyTypeUnknown:
		return "Unknown"
	case KeyTypeEcdsa:
		return "Ecdsa"
	case KeyTypeSr25519:
		return "Sr25519"
	case KeyTypeBn254Bls:
		return "Bn254Bls"
	}
	return "KeyType(" + strconv.FormatUint(uint64(k), 10) + ")"
}

// Owner is one key allowed to obtain API keys for a service. KeyBytes are the
// exact bytes a client later sends as pub_key (e.g. a 33-byte compressed
// secp256k1 key, a 32-byte sr25519 key): ownership is byte equality.
type Owner struct {
	KeyType  KeyType `json:"key_type"`
	KeyBytes []byte  `json:"key_bytes"`
}

// Equal reports whether o and p are the same key.
func (o Owner) Equal(p Owner) bool {
	return o.KeyType == p.KeyType && bytes.Equal(o.KeyBytes, p.KeyBytes)
}

// TLSProfile is the bridge's TlsProfileConfig. The Encrypted* blobs are
// ChaCha20-Poly1305 envelopes (12-byte nonce, then ciphertext and tag) that
// only the proxy opens; the registry treats them as opaque bytes. The
// pointer fields are proto3 optional: nil means absent.
type TLSProfile struct {
	TLSEnabled                  bool     `json:"tls_enabled"`
	RequireClientMTLS           bool     `json:"require_client_mtls"`
	EncryptedServerCert         []byte   `json:"encrypted_server_cert,omitempty"`
	EncryptedServerKey          []byte   `json:"encrypted_server_key,omitempty"`
	EncryptedClientCABundle     []byte   `json:"encrypted_client_ca_bundle,omitempty"`
	EncryptedUpstreamCABundle   []byte   `json:"encrypted_upstream_ca_bundle,omitempty"`
	EncryptedUpstreamClientCert []byte   `json:"encrypted_upstream_client_cert,omitempty"`
	EncryptedUpstreamClientKey  []byte   `json:"encrypted_upstream_client_key,omitempty"`
	ClientCertTTLHours          uint32   `json:"client_cert_ttl_hours,omitempty"`
	SNI                         *string  `json:"sni,omitempty"`
	SubjectAltNameTemplate      *string  `json:"subject_alt_name_template,omitempty"`
	AllowedDNSNames             []string `json:"allowed_dns_names,omitempty"`
}

// Transport says how the proxy reaches a record's upstream.
type Transport string

// Transports.
const (
	// TransportTCPLocal: UpstreamURL is http(s)://host:port on this machine.
	// The proxy only dials loopback addresses for it.
	TransportTCPLocal Transport = "tcp-local"
	// TransportUnix: UpstreamURL is unix:///absolute/path.sock (HTTP over a
	// unix stream socket).
	TransportUnix Transport = "unix"
	// TransportTunnel: UpstreamURL is the instance's address as seen from its
	// gateway; the proxy dials it through the dialer of Record.Gateway.
	TransportTunnel Transport = "tunnel"
)

// Valid reports whether t is a known transport ("" counts as tcp-local,
// which is what a plain Blueprint service registers).
func (t Transport) Valid() bool {
	switch t {
	case "", TransportTCPLocal, TransportUnix, TransportTunnel:
		return true
	}
	return false
}

// ID is a service record's key: the Blueprint (main, sub) service id.
type ID struct {
	Main uint64
	Sub  uint64
}

// String is the X-Service-Id form "main:sub".
func (id ID) String() string {
	return strconv.FormatUint(id.Main, 10) + ":" + strconv.FormatUint(id.Sub, 10)
}

// Record is one registered service.
type Record struct {
	ServiceID    uint64      `json:"service_id"`
	SubID        uint64      `json:"sub_id"`
	APIKeyPrefix string      `json:"api_key_prefix"`
	Owners       []Owner     `json:"owners"`
	UpstreamURL  string      `json:"upstream_url"`
	TLSProfile   *TLSProfile `json:"tls_profile,omitempty"`
	Transport    Transport   `json:"transport,omitempty"`
	// Gateway names the remote whose tunnel reaches the upstream; set only
	// when Transport is TransportTunnel.
	Gateway string `json:"gateway,omitempty"`
	// InstanceID is the bpm instance (bp-…) that registered the record, so
	// terminate can find and remove it.
	InstanceID string `json:"instance_id,omitempty"`
	// ViaBridge is set on records the service registered itself through
	// its bridge. The manager writes a fallback route for every local
	// instance with an address; once the service has said where it listens
	// (and who owns it), the manager leaves the record alone.
	ViaBridge bool `json:"via_bridge,omitempty"`
}

// ID returns the record's key.
func (r *Record) ID() ID { return ID{Main: r.ServiceID, Sub: r.SubID} }

// HasOwner reports whether o is among r's owners.
func (r *Record) HasOwner(o Owner) bool {
	return slices.ContainsFunc(r.Owners, o.Equal)
}

// Clone returns a deep copy, so callers can never mutate the registry's view.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Owners = make([]Owner, len(r.Owners))
	for i, o := range r.Owners {
		c.Owners[i] = Owner{KeyType: o.KeyType, KeyBytes: slices.Clone(o.KeyBytes)}
	}
	if r.TLSProfile != nil {
		p := *r.TLSProfile
		p.EncryptedServerCert = slices.Clone(p.EncryptedServerCert)
		p.EncryptedServerKey = slices.Clone(p.EncryptedServerKey)
		p.EncryptedClientCABundle = slices.Clone(p.EncryptedClientCABundle)
		p.EncryptedUpstreamCABundle = slices.Clone(p.EncryptedUpstreamCABundle)
		p.EncryptedUpstreamClientCert = slices.Clone(p.EncryptedUpstreamClientCert)
		p.EncryptedUpstreamClientKey = slices.Clone(p.EncryptedUpstreamClientKey)
		p.AllowedDNSNames = slices.Clone(p.AllowedDNSNames)
		if p.SNI != nil {
			s := *p.SNI
			p.SNI = &s
		}
		if p.SubjectAltNameTemplate != nil {
			s := *p.SubjectAltNameTemplate
			p.SubjectAltNameTemplate = &s
		}
		c.TLSProfile = &p
	}
	return &c
}

// Validate checks what the registry itself relies on. Upstream Blueprint
// validates none of the record's fields; bpm checks the routing fields here
// and leaves URL policy (loopback only, scheme) to the proxy.
func (r *Record) Validate() error {
	if !r.Transport.Valid() {
		return fmt.Errorf("registry: record %s: unknown transport %q", r.ID(), r.Transport)
	}
	if r.Transport == TransportTunnel && r.Gateway == "" {
		return fmt.Errorf("registry: record %s: transport tunnel needs a gateway", r.ID())
	}
	return nil
}

// EventKind says what happened to a record.
type EventKind int

// Event kinds.
const (
	EventPut EventKind = iota + 1
	EventDelete
)

// Event is a change notification. Record is the new value for EventPut and
// the removed value for EventDelete (a clone: subscribers may keep it).
type Event struct {
	Kind   EventKind
	ID     ID
	Record *Record
}

// keyPrefix namespaces service records in a Store shared with other users
// (the auth proxy keeps its API keys in the same Store under "apikey/").
const keyPrefix = "svc/"

// storeKey is fixed-width so that List by prefix returns records in id order.
func storeKey(id ID) string {
	return fmt.Sprintf("%s%020d:%020d", keyPrefix, id.Main, id.Sub)
}

// Registry is the in-memory, write-through service registry. It is safe for
// concurrent use.
type Registry struct {
	store Store
	log   *slog.Logger

	// wmu serialises writers and their notifications, so subscribers see
	// changes in the order they were stored; mu guards the map for readers,
	// who never wait on a store write or a subscriber.
	wmu     sync.Mutex
	mu      sync.RWMutex
	records map[ID]*Record

	subMu  sync.Mutex
	nextID int
	subs   map[int]func(Event)
}

// Open loads every record from store. A nil logger discards.
func Open(ctx context.Context, store Store, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{store: store, log: log, records: map[ID]*Record{}, subs: map[int]func(Event){}}
	kvs, err := store.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("registry: load: %w", err)
	}
	for _, kv := range kvs {
		var rec Record
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("registry: load %s: %w", kv.Key, err)
		}
		r.records[rec.ID()] = &rec
	}
	return r, nil
}

// Get returns a copy of the record for id, or ErrNotFound.
func (r *Registry) Get(id ID) (*Record, error) {
	r.mu.RLock()
	rec, ok := r.records[id]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("registry: get %s: %w", id, ErrNotFound)
	}
	return rec.Clone(), nil
}

// Lookup is Get without the copy, for the proxy's hot path. The returned
// record must not be modified; it is never mutated in place by the registry
// (every change replaces the pointer).
func (r *Registry) Lookup(id ID) (*Record, bool) {
	r.mu.RLock()
	rec, ok := r.records[id]
	r.mu.RUnlock()
	return rec, ok
}

// List returns copies of all records in (main, sub) order.
func (r *Registry) List() []*Record {
	r.mu.RLock()
	out := make([]*Record, 0, len(r.records))
	for _, rec := range r.records {
		out = append(out, rec.Clone())
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Record) int {
		if c := cmpU64(a.ServiceID, b.ServiceID); c != 0 {
			return c
		}
		return cmpU64(a.SubID, b.SubID)
	})
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Create stores rec only if no record with its id exists (first
// registration). It returns ErrExists otherwise.
func (r *Registry) Create(ctx context.Context, rec *Record) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	rec = rec.Clone()
	id := rec.ID()
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("registry: create %s: %w", id, err)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if _, ok := r.Lookup(id); ok {
		return fmt.Errorf("registry: create %s: %w", id, ErrExists)
	}
	if pia, ok := r.store.(PutIfAbsenter); ok {
		err = pia.PutIfAbsent(ctx, storeKey(id), val)
	} else {
		// The in-memory map is loaded from the store and every write goes
		// through wmu, so a miss above is a miss in the store.
		err = r.store.Put(ctx, storeKey(id), val)
	}
	if err != nil {
		return fmt.Errorf("registry: create %s: %w", id, err)
	}
	r.set(id, rec)
	r.notify(Event{Kind: EventPut, ID: id, Record: rec.Clone()})
	return nil
}

// Put stores rec, replacing any record with its id (re-registration by the
// bridge that owns the id: a full overwrite, owners included).
func (r *Registry) Put(ctx context.Context, rec *Record) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	rec = rec.Clone()
	return r.replace(ctx, rec.ID(), func(*Record) (*Record, error) { return rec, nil }, true)
}

// Update applies fn to a copy of the existing record and stores the result.
// It returns ErrNotFound if there is no record. fn returning nil record means
// "no change".
func (r *Registry) Update(ctx context.Context, id ID, fn func(*Record) (*Record, error)) error {
	return r.replace(ctx, id, fn, false)
}

func (r *Registry) replace(ctx context.Context, id ID, fn func(*Record) (*Record, error), create bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	old, ok := r.Lookup(id)
	if !ok && !create {
		return fmt.Errorf("registry: update %s: %w", id, ErrNotFound)
	}
	next, err := fn(old.Clone())
	if err != nil || next == nil {
		return err
	}
	if next.ID() != id {
		return fmt.Errorf("registry: update %s: record id changed to %s", id, next.ID())
	}
	if err := next.Validate(); err != nil {
		return err
	}
	val, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("registry: put %s: %w", id, err)
	}
	if err := r.store.Put(ctx, storeKey(id), val); err != nil {
		return fmt.Errorf("registry: put %s: %w", id, err)
	}
	r.set(id, next)
	r.notify(Event{Kind: EventPut, ID: id, Record: next.Clone()})
	return nil
}

// Delete removes the record for id. It returns ErrNotFound if there was none.
func (r *Registry) Delete(ctx context.Context, id ID) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	old, ok := r.Lookup(id)
	if !ok {
		return fmt.Errorf("registry: delete %s: %w", id, ErrNotFound)
	}
	if err := r.store.Delete(ctx, storeKey(id)); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("registry: delete %s: %w", id, err)
	}
	r.set(id, nil)
	r.notify(Event{Kind: EventDelete, ID: id, Record: old.Clone()})
	return nil
}

// DeleteInstance removes every record registered by instance id (used by
// terminate), returning the ids removed.
func (r *Registry) DeleteInstance(ctx context.Context, instanceID string) ([]ID, error) {
	if instanceID == "" {
		return nil, nil
	}
	var ids []ID
	for _, rec := range r.List() {
		if rec.InstanceID == instanceID {
			ids = append(ids, rec.ID())
		}
	}
	var removed []ID
	for _, id := range ids {
		if err := r.Delete(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			return removed, err
		}
		removed = append(removed, id)
	}
	return removed, nil
}

// AddOwner adds o to the record's owners; adding an existing owner is a
// no-op (idempotent, as upstream).
func (r *Registry) AddOwner(ctx context.Context, id ID, o Owner) error {
	o.KeyBytes = slices.Clone(o.KeyBytes)
	return r.Update(ctx, id, func(rec *Record) (*Record, error) {
		if rec.HasOwner(o) {
			return nil, nil
		}
		rec.Owners = append(rec.Owners, o)
		return rec, nil
	})
}

// RemoveOwner removes o; removing an absent owner is OK.
func (r *Registry) RemoveOwner(ctx context.Context, id ID, o Owner) error {
	return r.Update(ctx, id, func(rec *Record) (*Record, error) {
		if !rec.HasOwner(o) {
			return nil, nil
		}
		rec.Owners = slices.DeleteFunc(rec.Owners, o.Equal)
		return rec, nil
	})
}

// set replaces (or with nil, removes) the map entry; callers hold wmu.
func (r *Registry) set(id ID, rec *Record) {
	r.mu.Lock()
	if rec == nil {
		delete(r.records, id)
	} else {
		r.records[id] = rec
	}
	r.mu.Unlock()
}

// Subscribe registers fn to be called after every change, in order, on the
// goroutine that made the change. fn may read the registry (Get, Lookup,
// List) but must not call its mutating methods. The returned func unsubscribes.
func (r *Registry) Subscribe(fn func(Event)) (cancel func()) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	id := r.nextID
	r.nextID++
	r.subs[id] = fn
	return func() {
		r.subMu.Lock()
		delete(r.subs, id)
		r.subMu.Unlock()
	}
}

func (r *Registry) notify(ev Event) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	for _, fn := range r.subs {
		fn(ev)
	}
	r.log.Debug("registry change", "service", ev.ID.String(), "kind", ev.Kind)
}

// ParseID parses the X-Service-Id forms "N" and "N:M" (decimal u64s).
func ParseID(s string) (ID, error) {
	main, sub, hasSub := strings.Cut(s, ":")
	m, err := parseU64(main)
	if err != nil {
		return ID{}, fmt.Errorf("registry: service id %q: %w", s, err)
	}
	var n uint64
	if hasSub {
		if n, err = parseU64(sub); err != nil {
			return ID{}, fmt.Errorf("registry: service id %q: %w", s, err)
		}
	}
	return ID{Main: m, Sub: n}, nil
}

// parseU64 accepts only plain decimal digits: no sign, no spaces, no 0x.
func parseU64(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
