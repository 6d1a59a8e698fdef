// Package state is the manager's durable record of instances: a SQLite
// database (modernc.org/sqlite, pure Go) in WAL mode with ordered schema
// migrations.
//
// # Intent first
//
// The manager writes an instance's row (state pending) with CreateInstance
// before it causes any side effect on a remote. Every mutating method is one
// SQLite transaction, so after a crash — of the process at any point — each
// row is either fully there or not there at all, and a row that was committed
// survives. Reconcile on start then asks each provider what exists and adopts
// or cleans up from these rows.
//
// The database runs with synchronous=NORMAL. In WAL mode that is fully
// durable against a crash of the process; after a crash of the operating
// system or a power loss, the most recent commits may be rolled back (never
// corrupted). A resource created for a pending row lost that way is still
// found by its ownership labels and cleaned up by reconcile, so nothing leaks.
//
// # No secrets
//
// Nothing in this database is encrypted. Callers must never store secrets in
// it: not in Message, not in Meta, and not in an instance's Handle. The
// Handle is opaque provider data (container id, namespace, host and unit
// name); providers must keep credentials out of it and refer to the keystore
// or the platform's own secret objects instead. The file is created 0600 only
// as defence in depth.
//
// # Concurrency
//
// A Store is safe for concurrent use. Writes go through a single connection,
// so writers in one process queue in Go rather than spin on SQLITE_BUSY;
// reads use a separate pool and, thanks to WAL, never wait for a writer.
// Several processes may open the same file (the CLI and the manager): writes
// begin IMMEDIATE and wait on busy_timeout for each other.
package state
