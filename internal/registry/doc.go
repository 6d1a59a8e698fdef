// Package registry is the hub's service registry: which upstream answers for
// a Blueprint service id. The bridge writes it (a service registers its proxy
// upstream over gRPC), the auth proxy reads it to route requests, and the
// manager deletes a service's record when its instance terminates.
//
// A record is keyed by (main service id, sub id); bridge records use sub id 0
// as upstream Blueprint does. The registry keeps every record in memory for
// the proxy's hot path and writes through to a Store, a tiny byte-level
// key/value interface, so the manager can back it with its SQLite state while
// tests use MemStore or FileStore.
//
// First registration must be atomic "write if absent" (two bridges racing for
// one service id: exactly one wins). A Store that also implements
// PutIfAbsenter gets that atomically across processes; otherwise the
// registry's own lock provides it within one process, which is the only
// arrangement bpm runs (one manager per data directory).
package registry
