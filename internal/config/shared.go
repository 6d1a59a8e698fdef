package config

import (
	"encoding/base64"
	"errors"
	"net"
	"strconv"
)

// Tunnel is the [remote.NAME.tunnel] sub-table every remote provider shares:
// how the remote's gateway reaches the operator's hub over WireGuard.
type Tunnel struct {
	// Endpoint is the hub's host:port as seen from the remote (the
	// gateway dials out, so the hub must be reachable from there).
	Endpoint string `toml:"endpoint"`
	// PrivateKey is a WireGuard private key in the base64 form `wg genkey`
	// prints. Empty means bpm generates and stores one.
	PrivateKey Secret `toml:"private_key" secret:"true"`
}

// Validate checks the sub-table; field paths are relative to it.
func (t *Tunnel) Validate() error {
	var fe FieldErrors
	if t.Endpoint != "" {
		if err := CheckHostPort(t.Endpoint); err != nil {
			fe.Add("endpoint", "%q: %s", t.Endpoint, err)
		}
	}
	if t.PrivateKey != "" {
		// The message says what is wrong without quoting the key.
		if b, err := base64.StdEncoding.DecodeString(t.PrivateKey.Reveal()); err != nil || len(b) != 32 {
			fe.Add("private_key", "not a WireGuard private key (44 characters of base64, as printed by `wg genkey`)")
		}
	}
	return fe.Err()
}

// CheckHostPort reports whether s is host:port with a non-empty host and a
// port in 1..65535.
func CheckHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if host == "" {
		return errors.New("empty host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port must be a number in 1..65535")
	}
	return nil
}

// Resources is the [remote.NAME.resources] sub-table: limits bpm enforces
// on what it places on a remote. Quantities use Kubernetes notation
// ("500m", "4" CPUs; "512Mi", "8Gi" memory), which operators already know.
type Resources struct {
	// CPULimit is the most CPU one instance may use.
	CPULimit string `toml:"cpu_limit"`
	// MemoryLimit is the most memory one instance may use.
	MemoryLimit string `toml:"memory_limit"`
	// MaxInstances caps how many instances bpm runs on the remote; 0 means
	// no cap.
	MaxInstances int `toml:"max_instances"`
}

// Validate checks the sub-table; field paths are relative to it.
func (r *Resources) Validate() error {
	var fe FieldErrors
	if r.CPULimit != "" {
		if q, err := ParseQuantity(r.CPULimit); err != nil {
			fe.Add("cpu_limit", "%q: %s", r.CPULimit, err)
		} else if q.Value < 0.001 {
			fe.Add("cpu_limit", "%q: must be at least 1m (a thousandth of a CPU)", r.CPULimit)
		}
	}
	if r.MemoryLimit != "" {
		if q, err := ParseQuantity(r.MemoryLimit); err != nil {
			fe.Add("memory_limit", "%q: %s", r.MemoryLimit, err)
		} else if q.Value < 1<<20 {
			// Kubernetes accepts "512" as 512 bytes, which is always a
			// missing suffix in practice.
			fe.Add("memory_limit", "%q is less than 1Mi; did you forget a suffix such as Mi or Gi?", r.MemoryLimit)
		}
	}
	if r.MaxInstances < 0 {
		fe.Add("max_instances", "%d: must be 0 (no cap) or more", r.MaxInstances)
	}
	return fe.Err()
}
