package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
)

// DefaultCIDR is the tunnel network when the operator configures none. The
// addresses exist only inside the userspace netstacks, never on a host
// interface, so a clash with a real network cannot misroute host traffic.
const DefaultCIDR = "10.77.0.0/16"

// addressesKey is the Store key under which allocations are kept.
const addressesKey = "tunnel.addresses"

// Store keeps small values across manager restarts. The manager backs it
// with its state database's meta table; MemStore serves tests.
type Store interface {
	// Get returns the value stored under key; found is false when there is
	// none (which is not an error).
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Set stores value under key, replacing any earlier value.
	Set(ctx context.Context, key string, value []byte) error
}

// MemStore is an in-memory Store.
type MemStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Get implements Store.
func (s *MemStore) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return append([]byte(nil), v...), ok, nil
}

// Set implements Store.
func (s *MemStore) Set(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = append([]byte(nil), value...)
	return nil
}

// Allocator hands out tunnel addresses from one prefix: the first host
// address to the hub, then one stable address per remote, persisted so a
// remote keeps its address across manager restarts (its gateway was
// configured with it and may be running elsewhere, out of reach).
type Allocator struct {
	prefix netip.Prefix
	store  Store
	mu     sync.Mutex
}

// allocations is the persisted form.
type allocations struct {
	Prefix  string                `json:"prefix"`
	Remotes map[string]netip.Addr `json:"remotes"`
}

// NewAllocator returns an allocator for prefix (for example 10.77.0.0/16).
// The prefix must leave room for the hub and at least one remote.
func NewAllocator(prefix netip.Prefix, store Store) (*Allocator, error) {
	if !prefix.IsValid() {
		return nil, errors.New("tunnel: allocator: invalid prefix")
	}
	prefix = prefix.Masked()
	bits := prefix.Addr().BitLen()
	if bits-prefix.Bits() < 2 {
		return nil, fmt.Errorf("tunnel: allocator: prefix %s is too small (needs at least a /%d)", prefix, bits-2)
	}
	if store == nil {
		return nil, errors.New("tunnel: allocator: store is nil")
	}
	return &Allocator{prefix: prefix, store: store}, nil
}

// ParsePrefix parses a CIDR, naming the offending text on failure.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("tunnel: parse CIDR %q: %w", s, err)
	}
	return p, nil
}

// Prefix returns the tunnel network.
func (a *Allocator) Prefix() netip.Prefix { return a.prefix }

// Hub returns the hub's tunnel address: the prefix's first host address.
func (a *Allocator) Hub() netip.Addr { return a.prefix.Addr().Next() }

// Allocate returns name's address, allocating and persisting one (the lowest
// free) on first use. Calling it again returns the same address.
func (a *Allocator) Allocate(ctx context.Context, name string) (netip.Addr, error) {
	if name == "" {
		return netip.Addr{}, errors.New("tunnel: allocate: remote name is empty")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, err := a.load(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	if addr, ok := al.Remotes[name]; ok {
		return addr, nil
	}
	used := map[netip.Addr]bool{a.Hub(): true}
	for _, addr := range al.Remotes {
		used[addr] = true
	}
	for addr := a.Hub().Next(); a.prefix.Contains(addr); addr = addr.Next() {
		if used[addr] || a.isBroadcast(addr) {
			continue
		}
		al.Remotes[name] = addr
		if err := a.save(ctx, al); err != nil {
			return netip.Addr{}, err
		}
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("tunnel: allocate %s: no free address left in %s", name, a.prefix)
}

// Lookup returns name's address without allocating one.
func (a *Allocator) Lookup(ctx context.Context, name string) (netip.Addr, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, err := a.load(ctx)
	if err != nil {
		return netip.Addr{}, false, err
	}
	addr, ok := al.Remotes[name]
	return addr, ok, nil
}

// Release frees name's address. Releasing an unknown name is not an error,
// so terminate paths stay idempotent.
func (a *Allocator) Release(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, err := a.load(ctx)
	if err != nil {
		return err
	}
	if _, ok := al.Remotes[name]; !ok {
		return nil
	}
	delete(al.Remotes, name)
	return a.save(ctx, al)
}

// All returns every allocation, sorted by name.
func (a *Allocator) All(ctx context.Context) ([]Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, err := a.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Allocation, 0, len(al.Remotes))
	for n, addr := range al.Remotes {
		out = append(out, Allocation{Name: n, Address: addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Allocation is one remote's tunnel address.
type Allocation struct {
	Name    string
	Address netip.Addr
}

func (a *Allocator) isBroadcast(addr netip.Addr) bool {
	if !addr.Is4() {
		return false
	}
	return !a.prefix.Contains(addr.Next())
}

// load reads the allocations, dropping any that fall outside the current
// prefix (the operator changed the CIDR: those remotes get new addresses,
// and the reconcile that follows reconfigures their gateways).
func (a *Allocator) load(ctx context.Context) (*allocations, error) {
	al := &allocations{Remotes: map[string]netip.Addr{}}
	b, found, err := a.store.Get(ctx, addressesKey)
	if err != nil {
		return nil, fmt.Errorf("tunnel: load addresses: %w", err)
	}
	if !found || len(b) == 0 {
		return al, nil
	}
	if err := json.Unmarshal(b, al); err != nil {
		return nil, fmt.Errorf("tunnel: load addresses: decode %s: %w", addressesKey, err)
	}
	if al.Remotes == nil {
		al.Remotes = map[string]netip.Addr{}
	}
	for n, addr := range al.Remotes {
		if !a.prefix.Contains(addr) || addr == a.Hub() {
			delete(al.Remotes, n)
		}
	}
	return al, nil
}

func (a *Allocator) save(ctx context.Context, al *allocations) error {
	al.Prefix = a.prefix.String()
	b, err := json.Marshal(al)
	if err != nil {
		return fmt.Errorf("tunnel: save addresses: %w", err)
	}
	if err := a.store.Set(ctx, addressesKey, b); err != nil {
		return fmt.Errorf("tunnel: save addresses: %w", err)
	}
	return nil
}
