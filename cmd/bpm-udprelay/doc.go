// Command bpm-udprelay runs a UDP impairment relay (package
// internal/testenv/udprelay) as a process, so scripts/testenv can put one
// between gateways in network namespaces and a hub on the host. It is a test
// tool, not part of bpm.
//
//	bpm-udprelay -listen 0.0.0.0:51830 -upstream 127.0.0.1:51820 \
//	    -control 127.0.0.1:0 -control-addr-file /path/control.addr
//
// The control API (HTTP, no authentication) must stay on loopback.
package main
