// Package tunnel is bpm's WireGuard network: key types, tunnel address
// allocation, the hub device that lives inside the manager, the spoke device
// a gateway runs, declarative peer reconcile and wg-quick export.
//
// Both ends run golang.zx2c4.com/wireguard in userspace with a gVisor
// netstack instead of a kernel interface: no root, no kernel module, and the
// tunnel addresses exist only inside the process. The hub therefore never
// routes packets for the host; it dials through the tunnel with DialTunnel
// (a peer's own tunnel address) or PeerDialer.DialContext (an address inside
// a remote, relayed by that remote's gateway; see package gateway for the
// relay protocol spoken on ForwardPort).
//
// Keys are value types that cannot be printed by accident: PrivateKey has no
// String method and formats, logs and marshals as "REDACTED".
package tunnel
