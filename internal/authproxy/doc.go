// Package authproxy is bpm's auth proxy: the one door to every service
// instance, local or behind a gateway's tunnel. It speaks the Blueprint auth
// proxy's HTTP API (wire sheet §2) so real Blueprint clients work unchanged:
//
//	POST /v1/auth/challenge  owner key → 32-byte challenge (30 s)
//	POST /v1/auth/verify     signed challenge → long-lived API key
//	POST /v1/auth/exchange   API key → PASETO v4.local token (15 min)
//	anything else            Bearer token → the service's upstream
//
// Requests are routed by the service id inside the token to the upstream
// the service registered through its bridge (internal/registry): a loopback
// TCP address, a unix socket, or an address behind a gateway, dialled with
// the Dialer the manager supplies for that gateway. HTTP/1.1, h2c, WebSocket
// upgrades and gRPC (unary and streaming, h2c to the upstream) pass through.
//
// Where upstream is lax bpm is strict, and docs/AUTH.md lists every place:
// challenges are stored server-side, bound to (service, key), single-use
// and expire; tokens die with their API key; raw API keys are refused on
// proxied paths unless Config.AllowRawAPIKeys; client identity headers are
// always stripped; BN254 keys are refused rather than parsed; the listener
// defaults to loopback.
//
// Secrets never reach logs: APIKey, Token and TokenKey print as
// [REDACTED], and API keys are stored only as Keccak-256 hashes.
package authproxy
