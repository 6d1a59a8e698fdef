// Package keystore is bpm's encrypted store for credentials: cloud tokens,
// WireGuard keys and other values that config files reference as
// `keystore:NAME` instead of holding them in clear text.
//
// All entries live in one file, <dir>/keystore.age: a JSON document encrypted
// with an age scrypt recipient derived from the operator's passphrase. The
// passphrase comes from BPM_KEYSTORE_PASSPHRASE or, for setups that keep it
// out of the environment, from the file named by BPM_KEYSTORE_KEY_FILE, which
// must not be readable by group or others.
//
// Every write re-reads the file under an advisory lock and replaces it
// atomically (temp file, fsync, rename), so a CLI `bpm keys set` and a running
// manager never lose each other's changes and a crash never leaves a torn
// file. Values are never logged; the Passphrase type cannot be printed.
package keystore
