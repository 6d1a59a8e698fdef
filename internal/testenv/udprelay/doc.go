// Package udprelay is a userspace UDP impairment relay for tests: it sits
// between clients (a WireGuard gateway) and one upstream (the hub) and drops,
// delays, jitters, duplicates and reorders datagrams, or cuts the link
// entirely, per direction, reconfigured at run time.
//
// It exists because `tc netem` is not available on the machines bpm's tests
// run on (see shared/TESTENV.md), and a relay needs no kernel support, no
// root and no namespace. Tests start one in-process on loopback with
// [Listen]; scripts/testenv starts the bpm-udprelay binary (cmd/bpm-udprelay)
// so gateways in network namespaces can use it. Both are driven over the same
// small HTTP control API ([Relay.Handler], [Client]):
//
//	GET  /config     current Config as JSON
//	POST /config     replace the impairments (and the upstream, if given)
//	POST /partition  drop everything; optional {"direction":"up"|"down"|"both"}
//	POST /heal       end the partition (other impairments stay)
//	POST /reset      no impairments, no partition, zero counters
//	GET  /stats      counters per direction
//
// "up" is client → upstream, "down" is upstream → client. Each client
// address gets its own socket towards the upstream, so the upstream sees one
// source address per client, like a NAT.
package udprelay
