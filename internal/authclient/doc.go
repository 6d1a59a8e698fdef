// Package authclient is the client side of the auth proxy's flow
// (docs/AUTH.md): ask for a challenge, sign it with a service owner's key,
// trade the signature for a long-lived API key, and trade that key for a
// short-lived access token to send with every proxied request.
//
// It speaks the upstream Blueprint wire format (BLUEPRINT-WIRE.md §2), so it
// works against bpm's proxy and upstream's alike. It is used by `bpm auth`
// and by tests that need a real client.
//
// Signers follow the wire sheet's rules exactly: ECDSA secp256k1 signs the
// raw 32 challenge bytes as the digest (RFC 6979, low-S, 64-byte r‖s);
// sr25519 signs them under the "substrate" context. Key files hold
// Substrate-compatible secret seeds, so a `subkey` seed works as is.
//
// Everything secret — private keys, API keys, tokens — prints as
// [REDACTED] through fmt and slog; the clear value comes out only through an
// explicit Reveal (or, for private keys, never: they only sign and are
// written to their own 0600 file). Replies are decoded strictly: an unknown
// field, a missing one or trailing data is an error, because a reply that
// does not look exactly as expected is not one to build credentials from.
package authclient
