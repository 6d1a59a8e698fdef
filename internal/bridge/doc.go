// Package bridge is the manager side of the Blueprint manager bridge: a gRPC
// server wire-compatible with the Blueprint SDK's
// blueprint_manager_bridge.BlueprintManagerBridge, through which a running
// service says it is alive (Ping), asks for a free port, and registers the
// upstream the auth proxy should route its service id to.
//
// One Server serves one instance and pins itself to the first service id
// that registers through it; every later call for another id is refused
// (PERMISSION_DENIED), and the first registration is write-if-absent in the
// shared registry, so one instance can never take over another's service id.
// Codes and messages follow the wire sheet (§1.5) to the letter, because the
// Blueprint runner reports them to operators.
//
// The gRPC service is served over a Transport: a unix socket for local
// processes (the Blueprint convention <runtime>/svc-<bid>-<sid>/svc-<bid>-<sid>.sock,
// passed as BRIDGE_SOCKET_PATH), vsock for VMs (hybrid vsock as
// cloud-hypervisor does it — a unix socket at <base>_8000 — or a native
// AF_VSOCK listener that admits only the guest's CID), and a tunnel: any
// net.Listener the gateway relay hands the manager for a remote instance.
//
// As upstream, the bridge has no authentication of its own: access control
// is the socket's file permissions (0600 in a 0700 directory), the vsock
// peer CID, or the tunnel's WireGuard peer, plus pinning.
package bridge
