package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// TransportType names the kinds of bridge transport.
type TransportType int

// Transport types.
const (
	// TransportUnix: a unix stream socket at the Blueprint base path (local
	// native processes; BRIDGE_SOCKET_PATH).
	TransportUnix TransportType = iota + 1
	// TransportVsock: a VM guest dialling the host on vsock port 8000.
	TransportVsock
	// TransportTunnel: a remote instance whose gateway relays its bridge
	// connections over the WireGuard tunnel.
	TransportTunnel
)

func (t TransportType) String() string {
	switch t {
	case TransportUnix:
		return "unix"
	case TransportVsock:
		return "vsock"
	case TransportTunnel:
		return "tunnel"
	}
	return "TransportType(" + strconv.Itoa(int(t)) + ")"
}

// Transport is where a bridge Server listens.
type Transport interface {
	Type() TransportType
	// Listen opens the listener. A transport is listened on once.
	Listen(ctx context.Context) (net.Listener, error)
	// Cleanup removes what Listen left on disk (socket files). It is safe to
	// call when Listen failed or was never called.
	Cleanup() error
}

// VsockPort is the port a Blueprint guest dials on the host (CID 2).
const VsockPort = 8000

// maxUnixPath is sun_path's size on Linux less the terminating NUL.
const maxUnixPath = 107

// DefaultRuntimeDir is the Blueprint manager's default runtime directory:
// $XDG_RUNTIME_DIR/blueprint-manager, else ./blueprint-manager/run.
func DefaultRuntimeDir() string {
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "blueprint-manager")
	}
	return filepath.Join("blueprint-manager", "run")
}

// ServiceName is the Blueprint service name svc-<bid>-<sid>.
func ServiceName(blueprintID, serviceID uint64) string {
	return "svc-" + strconv.FormatUint(blueprintID, 10) + "-" + strconv.FormatUint(serviceID, 10)
}

// SocketPath is the base bridge socket <runtime>/svc-<bid>-<sid>/svc-<bid>-<sid>.sock,
// the value of BRIDGE_SOCKET_PATH.
func SocketPath(runtimeDir string, blueprintID, serviceID uint64) string {
	n := ServiceName(blueprintID, serviceID)
	return filepath.Join(runtimeDir, n, n+".sock")
}

// HybridVsockPath is where the host listens for a cloud-hypervisor guest's
// connections to port VsockPort: <base>_8000.
func HybridVsockPath(base string) string {
	return base + "_" + strconv.Itoa(VsockPort)
}

// GuestCID is the vsock context id of the VM running service id: the id
// truncated to 32 bits, plus 3 (0–2 are reserved), as upstream. bpm refuses
// the ids where that would wrap into the reserved range or VMADDR_CID_ANY,
// or where truncation would make two services share a CID.
func GuestCID(serviceID uint64) (uint32, error) {
	if serviceID > 0xFFFFFFFF-4 {
		return 0, fmt.Errorf("bridge: vsock: service id %d has no distinct guest CID (id + 3 must fit below 2^32-1)", serviceID)
	}
	return uint32(serviceID) + 3, nil
}

// Unix is a unix-socket transport at Path (the base path, or a hybrid vsock
// path). Listen creates the parent directory 0700, removes a stale socket
// file and makes the socket 0600: file permissions are the bridge's only
// access control, as upstream.
type Unix struct {
	Path string

	created bool
}

// Type implements Transport.
func (u *Unix) Type() TransportType { return TransportUnix }

// Listen implements Transport.
func (u *Unix) Listen(ctx context.Context) (net.Listener, error) {
	return u.listen(ctx)
}

func (u *Unix) listen(ctx context.Context) (net.Listener, error) {
	if u.Path == "" {
		return nil, errors.New("bridge: unix: empty socket path")
	}
	if len(u.Path) > maxUnixPath {
		return nil, fmt.Errorf("bridge: unix: socket path %s is %d bytes, longer than the %d a unix socket allows", u.Path, len(u.Path), maxUnixPath)
	}
	dir := filepath.Dir(u.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bridge: unix: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bridge: unix: %w", err)
	}
	// A stale socket from a crashed manager would make bind fail; anything
	// else at that path is not ours to remove.
	if fi, err := os.Lstat(u.Path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("bridge: unix: %s exists and is not a socket", u.Path)
		}
		if err := os.Remove(u.Path); err != nil {
			return nil, fmt.Errorf("bridge: unix: remove stale socket: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", u.Path)
	if err != nil {
		return nil, fmt.Errorf("bridge: unix: %w", err)
	}
	// Closing the listener must not unlink: Cleanup does that, after the
	// server has stopped.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	u.created = true
	if err := os.Chmod(u.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("bridge: unix: %w", err)
	}
	return ln, nil
}

// Cleanup implements Transport: it removes the socket file.
func (u *Unix) Cleanup() error {
	if !u.created {
		return nil
	}
	if err := os.Remove(u.Path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("bridge: unix: cleanup: %w", err)
	}
	return nil
}

// Vsock is the VM transport for service ServiceID.
//
// With Native false (the Blueprint default, cloud-hypervisor's hybrid vsock)
// the host side is a unix socket at HybridVsockPath(BasePath), which the
// hypervisor connects to when the guest dials CID 2 port 8000.
//
// With Native true the host listens on AF_VSOCK port Port (default 8000) and
// admits only connections whose peer CID is GuestCID(ServiceID): every VM
// dials the same host port, so the CID is what tells them apart.
type Vsock struct {
	ServiceID uint64
	BasePath  string
	Native    bool
	Port      uint32

	unix *Unix
}

// Type implements Transport.
func (v *Vsock) Type() TransportType { return TransportVsock }

// Listen implements Transport.
func (v *Vsock) Listen(ctx context.Context) (net.Listener, error) {
	if !v.Native {
		v.unix = &Unix{Path: HybridVsockPath(v.BasePath)}
		return v.unix.listen(ctx)
	}
	cid, err := GuestCID(v.ServiceID)
	if err != nil {
		return nil, err
	}
	port := v.Port
	if port == 0 {
		port = VsockPort
	}
	return listenVsock(port, cid)
}

// Cleanup implements Transport.
func (v *Vsock) Cleanup() error {
	if v.unix != nil {
		return v.unix.Cleanup()
	}
	return nil
}

// Tunnel is the remote transport: the listener the gateway relay provides
// for one instance's bridge connections (already authenticated by the
// WireGuard peer that carries them).
type Tunnel struct {
	Listener net.Listener
}

// Type implements Transport.
func (t *Tunnel) Type() TransportType { return TransportTunnel }

// Listen implements Transport.
func (t *Tunnel) Listen(context.Context) (net.Listener, error) {
	if t.Listener == nil {
		return nil, errors.New("bridge: tunnel: no listener")
	}
	return t.Listener, nil
}

// Cleanup implements Transport.
func (t *Tunnel) Cleanup() error { return nil }

var (
	_ Transport = (*Unix)(nil)
	_ Transport = (*Vsock)(nil)
	_ Transport = (*Tunnel)(nil)
)
