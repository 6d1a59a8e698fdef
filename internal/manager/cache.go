package manager

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/bpm-project/bpm/internal/state"
)

// instanceCache is the manager's in-memory copy of the instance table,
// written through on every change. The manager is the only writer of its
// state database (the data-dir lock guarantees one manager), so the copy
// cannot go stale; it serves `list` without scanning SQLite, which was most
// of the cost of listing 10,000 instances. Reads of one instance still go
// to the store, the source of truth.
type instanceCache struct {
	mu   sync.RWMutex
	byID map[string]state.Instance
}

func (c *instanceCache) load(ctx context.Context, st *state.Store) error {
	all, err := st.ListInstances(ctx, state.Filter{IncludeTerminated: true})
	if err != nil {
		return fmt.Errorf("manager: load instances: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID = make(map[string]state.Instance, len(all))
	for _, in := range all {
		c.byID[in.ID] = in
	}
	return nil
}

func (c *instanceCache) put(in state.Instance) {
	c.mu.Lock()
	c.byID[in.ID] = in
	c.mu.Unlock()
}

// matching returns the instances f selects, ordered as the store orders
// them (created time, then id).
func (c *instanceCache) matching(f state.Filter) []state.Instance {
	c.mu.RLock()
	out := make([]state.Instance, 0, len(c.byID))
	for _, in := range c.byID {
		if f.Remote != "" && in.Remote != f.Remote {
			continue
		}
		if !f.IncludeTerminated && in.State.Final() {
			continue
		}
		out = append(out, in)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b state.Instance) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// ids returns the ids of the cached instances keep selects, unordered,
// copying nothing else: for the frequent passes (instances still starting)
// that usually select none.
func (c *instanceCache) ids(keep func(state.Instance) bool) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for id, in := range c.byID {
		if keep(in) {
			out = append(out, id)
		}
	}
	return out
}

// create records an intent row and caches it.
func (m *Manager) create(ctx context.Context, inst state.Instance) error {
	if err := m.store.CreateInstance(ctx, inst); err != nil {
		return err
	}
	stored, err := m.store.GetInstance(ctx, inst.ID)
	if err != nil {
		return err
	}
	m.cache.put(stored)
	return nil
}

// update changes a row and caches the result.
func (m *Manager) update(ctx context.Context, id string, u state.Update) (state.Instance, error) {
	out, err := m.store.UpdateInstance(ctx, id, u)
	if err != nil {
		return out, err
	}
	m.cache.put(out)
	if u.State != nil {
		// cost: open or close its running interval (cost.go). Only a state
		// can start or end one; a handle, address or message cannot.
		m.meterObserve(ctx, out)
	}
	return out, nil
}
