// Package gateway is the spoke agent a remote runs (`bpm gateway`): it
// holds the remote's only tunnel to the hub, dialing out so it works behind
// NAT, relays the hub's TCP connections to instance addresses inside the
// remote, and serves a small HTTP control channel on its tunnel address.
//
// Forwarding uses the relay protocol of package tunnel on
// tunnel.ForwardPort: the hub names the target in a short header and the
// gateway dials it on the remote's own network, refusing targets outside its
// allow list (by default loopback and private ranges, never the cloud
// metadata address, so a compromised hub key still cannot turn the gateway
// into a proxy to the internet or to instance credentials).
//
// The control channel (HTTP on tunnel.ControlPort of the gateway's tunnel
// address, reachable only through the tunnel):
//
//	GET /healthz                      gateway and tunnel status (Status)
//	GET /v1/instances/health?addr=H:P[&http_path=/p][&timeout=2s]
//	                                  a TCP connect or HTTP GET check run from
//	                                  inside the remote (InstanceHealth)
//	POST   /v1/bridge/instances       {"instance_id": ID, "listen": L,
//	                                  "token": T}: serve instance ID's bridge
//	                                  endpoint at L, an absolute unix socket
//	                                  path (its BRIDGE_SOCKET_PATH) or a
//	                                  loopback 127.0.0.1:PORT / [::1]:PORT,
//	                                  and/or admit ID's relay sidecar with
//	                                  token T on the relay port; idempotent,
//	                                  another L or T replaces the old one
//	GET    /v1/bridge/instances       the endpoints served ("relay": true for
//	                                  a token; the token is never echoed)
//	DELETE /v1/bridge/instances/{id}  close instance id's endpoint (404 if none)
//	GET    /v1/bridge/port?preferred=N a port free on the remote's host, for
//	                                  the bridge's RequestPort
//
// The bridge relay. A remote instance speaks the Blueprint bridge protocol
// (gRPC over h2c) to an endpoint local to its own host, exactly as a local
// instance does to the manager's unix socket. The gateway relays each
// connection over the tunnel to the hub's tunnel.BridgePort with the relay
// header naming the instance id, and the manager serves that instance's
// pinned bridge on it. The manager, not the gateway, decides who may reach
// what: it admits a connection only when the WireGuard peer it came from is
// the gateway of the remote that runs the named instance, so a gateway
// (or anything on its host) cannot reach another remote's instance bridges.
//
// How the gateway learns which endpoints to serve: the manager tells it,
// over this control channel, when it deploys a remote instance (POST) and
// terminates it (DELETE). The control channel has no authentication of its
// own; it listens only on the gateway's tunnel address, which only the hub
// can reach, so the WireGuard handshake is its authentication. The hub is
// trusted with the remote anyway (it can relay to anything the allow list
// permits); a unix endpoint is 0600 in a 0700 directory, as a local bridge
// socket, and a TCP one is loopback only, reachable by every local user of
// the remote host: prefer the socket. Endpoints live in memory: a restarted
// gateway serves none until the manager tells it again.
//
// The bridge relay port (bridgerelay.go, BridgeRelayPort, enabled by
// BPM_GATEWAY_BRIDGE_LISTEN) is for instances that cannot share a unix
// socket with the gateway: on Kubernetes the gateway is its own pod. A
// sidecar in the instance's pod (`bpm gateway bridge-relay`) serves the
// socket inside the pod and relays each connection over TCP to this port,
// opening it with the instance id and a per-instance token that the
// manager generated, gave the instance's Secret, and registered here with
// POST. The token stands in for the socket's file permissions, which a
// TCP port on the cluster network cannot have: only the holder of X's
// token reaches X's bridge, the hub still checks that this gateway carries
// X, tokens are compared in constant time as digests, and a refusal is one
// log line with the claimed id and never the token.
//
// Errors are JSON {"error": {"code": ..., "message": ...}} as in package api.
package gateway
