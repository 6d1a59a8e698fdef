package manager

import (
	"context"
	"errors"
	"fmt"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/state"
)

// registryPrefix namespaces the service registry and the auth proxy's API
// keys (which share its Store) inside the state's meta table, apart from the
// tunnel's keys.
const registryPrefix = "registry/"

// registryStore adapts the state's meta table to registry.Store. Writes are
// SQLite transactions, so a registration survives a manager crash; first
// registrations are atomic through InsertMeta.
type registryStore struct{ s *state.Store }

var (
	_ registry.Store         = registryStore{}
	_ registry.PutIfAbsenter = registryStore{}
)

func (rs registryStore) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := rs.s.GetMeta(ctx, registryPrefix+key)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("registry store: %s: %w", key, registry.ErrNotFound)
	}
	return v, err
}

func (rs registryStore) Put(ctx context.Context, key string, value []byte) error {
	return rs.s.SetMeta(ctx, registryPrefix+key, value)
}

func (rs registryStore) PutIfAbsent(ctx context.Context, key string, value []byte) error {
	err := rs.s.InsertMeta(ctx, registryPrefix+key, value)
	if errors.Is(err, state.ErrExists) {
		return fmt.Errorf("registry store: %s: %w", key, registry.ErrExists)
	}
	return err
}

func (rs registryStore) Delete(ctx context.Context, key string) error {
	return rs.s.DeleteMeta(ctx, registryPrefix+key)
}

func (rs registryStore) List(ctx context.Context, prefix string) ([]registry.KV, error) {
	es, err := rs.s.ListMeta(ctx, registryPrefix+prefix)
	if err != nil {
		return nil, err
	}
	out := make([]registry.KV, len(es))
	for i, e := range es {
		out[i] = registry.KV{Key: e.Key[len(registryPrefix):], Value: e.Value}
	}
	return out, nil
}

// Registry returns the service registry (for the auth proxy and bridge).
func (m *Manager) Registry() *registry.Registry { return m.registry }

// routeFor is the record an instance gets at deploy: local instances are
// reached on this machine's loopback, remote ones through their remote's
// gateway at the address the provider reported (as seen from inside the
// remote).
func routeFor(in state.Instance) *registry.Record {
	rec := &registry.Record{
		ServiceID:   in.ServiceID,
		UpstreamURL: "http://" + in.Address,
		Transport:   registry.TransportTCPLocal,
		InstanceID:  in.ID,
	}
	if in.Remote != LocalRemote {
		rec.Transport, rec.Gateway = registry.TransportTunnel, provider.PeerName(in.Remote, in.Site)
	}
	return rec
}

// syncRoute records (or updates) the instance's route. A record held by
// another live instance is left alone: deploys pick service ids unique
// among live instances, but a service may register through a bridge under
// an id bpm did not deploy; the first holder keeps the route and the other
// gets an event saying why it has none.
// A record left by a terminated, failed or unknown instance is taken over.
func (m *Manager) syncRoute(ctx context.Context, in state.Instance) {
	// A failed instance answers nothing; the next deploy of its service id
	// takes the route over.
	if in.Address == "" || in.State.Final() || in.State == provider.StateFailed {
		return
	}
	want := routeFor(in)
	cur, err := m.registry.Get(want.ID())
	switch {
	case errors.Is(err, registry.ErrNotFound):
		err = m.registry.Create(ctx, want)
	case err != nil:
	case cur.InstanceID == in.ID && cur.ViaBridge:
		// The service registered itself: where it listens is its word,
		// not a guess from the manifest's port.
		return
	case cur.InstanceID == in.ID:
		if cur.UpstreamURL == want.UpstreamURL && cur.Transport == want.Transport && cur.Gateway == want.Gateway {
			return
		}
		err = m.registry.Update(ctx, want.ID(), func(r *registry.Record) (*registry.Record, error) {
			r.UpstreamURL, r.Transport, r.Gateway = want.UpstreamURL, want.Transport, want.Gateway
			return r, nil
		})
	case m.holdsRoute(ctx, cur.InstanceID):
		m.store.AppendEvent(ctx, in.ID, "route", fmt.Sprintf("no route: service id %d is already routed to %s", in.ServiceID, cur.InstanceID))
		m.log.Warn("service id already routed to another instance", "instance", in.ID, "service_id", in.ServiceID, "holder", cur.InstanceID)
		return
	default:
		err = m.registry.Put(ctx, want)
	}
	if err != nil {
		m.log.Error("record route", "instance", in.ID, "err", err)
	}
}

// holdsRoute reports whether instance id may keep a route: it exists and
// is neither terminated nor failed.
func (m *Manager) holdsRoute(ctx context.Context, id string) bool {
	if id == "" {
		return true // registered through the bridge by something bpm did not deploy
	}
	in, err := m.store.GetInstance(ctx, id)
	return err == nil && !in.State.Final() && in.State != provider.StateFailed
}

// dropRoutes removes every record of the instance (terminate).
func (m *Manager) dropRoutes(ctx context.Context, id string) {
	if _, err := m.registry.DeleteInstance(ctx, id); err != nil {
		m.log.Error("remove route", "instance", id, "err", err)
	}
}

// routeOf returns the instance's route for status.
func (m *Manager) routeOf(id string) *api.Route {
	for _, r := range m.registry.List() {
		if r.InstanceID != id {
			continue
		}
		t := string(r.Transport)
		if t == "" {
			t = string(registry.TransportTCPLocal)
		}
		return &api.Route{Service: r.ID().String(), Transport: t, Gateway: r.Gateway, Upstream: r.UpstreamURL}
	}
	return nil
}

// syncRoutes brings the registry in line with state after a restart:
// routes for live instances (including ones deployed before the registry
// existed), none for terminated ones.
func (m *Manager) syncRoutes(ctx context.Context) {
	live := map[string]bool{}
	for _, in := range m.cache.matching(state.Filter{}) {
		live[in.ID] = true
		if fresh, err := m.store.GetInstance(ctx, in.ID); err == nil {
			m.syncRoute(ctx, fresh)
		}
	}
	for _, r := range m.registry.List() {
		if r.InstanceID != "" && !live[r.InstanceID] {
			m.dropRoutes(ctx, r.InstanceID)
		}
	}
}
