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
//	*   /v1/bridge/...                reserved for the bridge issue: relayed
//	                                  bridge calls of the remote's instances;
//	                                  answers 501 Not Implemented for now
//
// Errors are JSON {"error": {"code": ..., "message": ...}} as in package api.
package gateway
