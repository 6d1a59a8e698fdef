// Package api is the manager's local API: the JSON types exchanged over the
// manager's unix socket, the error codes that travel with them, and the
// client the CLI uses. The server side lives in package manager; keeping the
// wire types here lets both sides share one definition.
//
// The transport is HTTP/1.1 over a unix socket whose file mode (0600) is the
// access control, like Docker's and Tailscale's local APIs.
package api
