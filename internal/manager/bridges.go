package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/state"
)

// bridgeSocketer is the local provider's BridgeSocketPath: the manager
// listens exactly where the provider tells the service to dial.
type bridgeSocketer interface {
	BridgeSocketPath(blueprintID, serviceID uint64) string
}

// instBridge is one local instance's bridge, alive as long as the instance.
type instBridge struct {
	srv    *bridge.Server
	path   string
	cancel context.CancelFunc
	done   chan struct{}
	// onStop, if set, runs after the bridge stopped (remotebridge.go: close
	// the gateway's endpoint unless keep).
	onStop func(ctx context.Context, keep bool)
}

// bridgeSet holds the running bridges by instance id.
type bridgeSet struct {
	mu sync.Mutex
	m  map[string]*instBridge
}

// bridgePath returns where a local instance's bridge listens, or "" when the
// local provider has no bridge socket convention.
func (m *Manager) bridgePath(bid, sid uint64) string {
	bs, ok := m.local.(bridgeSocketer)
	if !ok {
		return ""
	}
	return bs.BridgeSocketPath(bid, sid)
}

// startBridge starts the bridge of local instance id, pinned to its service
// id, at the socket path the service gets as BRIDGE_SOCKET_PATH. Starting a
// bridge the instance already has is a no-op. A bridge of another instance
// at the same path (a failed instance whose service id was reused) is shut
// down first: two listeners cannot share the path, and the old one's
// cleanup would unlink the new socket.
func (m *Manager) startBridge(ctx context.Context, id string, bid, sid uint64) error {
	path := m.bridgePath(bid, sid)
	if path == "" {
		return nil
	}
	m.bridges.mu.Lock()
	if _, ok := m.bridges.m[id]; ok {
		m.bridges.mu.Unlock()
		return nil
	}
	var stale []string
	for other, b := range m.bridges.m {
		if b.path == path {
			stale = append(stale, other)
		}
	}
	m.bridges.mu.Unlock()
	for _, other := range stale {
		m.log.Info("bridge: replacing the bridge of an instance at the same path", "instance", id, "old", other)
		m.stopBridge(ctx, other, false)
	}

	log := m.log.With("instance", id, "component", "bridge")
	want := sid
	srv, err := bridge.New(bridge.Config{
		Registry:          m.registry,
		Logger:            log,
		ExpectedServiceID: &want,
		InstanceID:        id,
		// Transport stays "" (tcp-local, or unix for a unix:// upstream):
		// it names how the proxy reaches the service, not the bridge's
		// own unix socket.
		OnFirstPing: func() {
			ectx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.store.AppendEvent(ectx, id, "bridge", "the service pinged its bridge")
		},
	})
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	tr := &bridge.Unix{Path: path}
	ln, err := tr.Listen(ctx)
	if err != nil {
		return err
	}
	// The bridge lives as long as the instance, not the request that
	// deployed it.
	bctx, cancel := context.WithCancel(context.Background())
	b := &instBridge{srv: srv, path: path, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		if err := srv.Serve(bctx, ln); err != nil {
			log.Warn("bridge stopped", "err", err)
		}
		if err := tr.Cleanup(); err != nil {
			log.Warn("bridge cleanup", "err", err)
		}
	}()
	m.bridges.mu.Lock()
	if m.bridges.m == nil {
		m.bridges.m = map[string]*instBridge{}
	}
	m.bridges.m[id] = b
	m.bridges.mu.Unlock()
	log.Debug("bridge listening", "socket", path)
	return nil
}

// stopBridge stops instance id's bridge, if it has one. With keep (the
// manager stopping, the instance running on) the service's record stays so
// the proxy keeps routing to it; otherwise (terminate, failed deploy) the
// bridge's shutdown deletes the record it pinned.
func (m *Manager) stopBridge(ctx context.Context, id string, keep bool) {
	m.bridges.mu.Lock()
	b, ok := m.bridges.m[id]
	delete(m.bridges.m, id)
	m.bridges.mu.Unlock()
	if !ok {
		return
	}
	if keep {
		b.srv.Detach()
	}
	b.cancel()
	select {
	case <-b.done:
	case <-ctx.Done():
		m.log.Warn("bridge did not stop in time", "instance", id)
	}
	if b.onStop != nil {
		b.onStop(ctx, keep)
	}
}

// stopBridges detaches every bridge (manager shutdown).
func (m *Manager) stopBridges() {
	m.bridges.mu.Lock()
	ids := make([]string, 0, len(m.bridges.m))
	for id := range m.bridges.m {
		ids = append(ids, id)
	}
	m.bridges.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range ids {
		m.stopBridge(ctx, id, true)
	}
}

// syncBridges gives every live local instance its bridge after a restart, at
// the same path, so its service can reconnect and register again.
func (m *Manager) syncBridges(ctx context.Context) {
	for _, in := range m.cache.matching(state.Filter{Remote: LocalRemote}) {
		if !needsBridge(in) {
			continue
		}
		if err := m.startBridge(ctx, in.ID, in.BlueprintID, in.ServiceID); err != nil {
			m.log.Warn("bridge not restored", "instance", in.ID, "err", err)
			m.store.AppendEvent(ctx, in.ID, "bridge", "bridge not restored after a manager restart: "+err.Error())
		}
	}
}

// needsBridge: a local instance that is (or may still be) running.
func needsBridge(in state.Instance) bool {
	return in.Remote == LocalRemote && len(in.Handle) > 0 && !in.State.Final() &&
		in.State != provider.StateFailed && in.State != provider.StateTerminating
}
