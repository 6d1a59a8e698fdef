// Package ssh is bpm's SSH provider: it runs instances on plain hosts reached
// over SSH (golang.org/x/crypto/ssh, one reused connection per host), with
// host keys verified against known_hosts — strictly unless
// trust_on_first_use is set, and never ignored.
//
// The native runtime reuses the local provider's design on the host: the
// bpm binary is uploaded once over SFTP to ~/.bpm/bin/bpm-<sha256> (hash
// checked on the host, then renamed into place), the package's binary to
// ~/.bpm/pkg/sha256-<hash>, spec.json (0600; it holds the env) to
// ~/.bpm/instances/<id>/, and `bpm supervise --dir DIR` is started in its
// own session. Status, logs and liveness are read back over SFTP; health
// checks and instance traffic go through direct-tcpip channels to the
// service's loopback port, so nothing listens on the host's network.
//
// Every remote command line is built by command/quote; values that are not
// fixed words (env, names) never reach a command line at all.
//
// The remote's gateway (EstablishTunnel) runs the same way: `bpm gateway`
// under `bpm supervise` in ~/.bpm/gateway/<remote>/ on the first reachable
// host, its BPM_GATEWAY_* configuration (the private key included) only in
// that directory's 0600 spec.json. A live gateway with the same spec is
// kept, a changed spec replaces it, and it outlives the remote's
// instances: Terminate never stops it.
//
// The docker runtime is not implemented yet (New returns
// provider.ErrNotAvailableYet for it).
package ssh
