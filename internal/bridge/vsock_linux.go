//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// VsockAddr is an AF_VSOCK address.
type VsockAddr struct {
	CID  uint32
	Port uint32
}

// Network implements net.Addr.
func (a *VsockAddr) Network() string { return "vsock" }

// String implements net.Addr.
func (a *VsockAddr) String() string {
	return "vsock:" + strconv.FormatUint(uint64(a.CID), 10) + ":" + strconv.FormatUint(uint64(a.Port), 10)
}

// vsockListener is a net.Listener on an AF_VSOCK socket. The standard
// library has no vsock support (net.FileListener refuses the family), so
// the socket is wrapped in an *os.File in non-blocking mode, which puts it
// in the runtime poller: Accept blocks without a thread and Close unblocks it.
type vsockListener struct {
	f       *os.File
	rc      syscall.RawConn
	addr    *VsockAddr
	wantCID uint32
}

// listenVsock listens on any local CID at port and admits only peers with
// CID wantCID.
func listenVsock(port, wantCID uint32) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bridge: vsock: socket: %w (no vsock support on this host)", err)
	}
	sa := &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bridge: vsock: bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bridge: vsock: listen: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vsock-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bridge: vsock: %w", err)
	}
	return &vsockListener{f: f, rc: rc, addr: &VsockAddr{CID: unix.VMADDR_CID_ANY, Port: port}, wantCID: wantCID}, nil
}

func (l *vsockListener) Accept() (net.Conn, error) {
	for {
		var nfd int
		var sa unix.Sockaddr
		var aerr error
		err := l.rc.Read(func(fd uintptr) bool {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return !errors.Is(aerr, unix.EAGAIN)
		})
		if err != nil {
			return nil, fmt.Errorf("bridge: vsock: accept: %w", err)
		}
		if aerr != nil {
			return nil, fmt.Errorf("bridge: vsock: accept: %w", aerr)
		}
		peer, ok := sa.(*unix.SockaddrVM)
		if !ok || !admitCID(peer.CID, l.wantCID) {
			// Another VM (or the host) dialled this bridge's port: not the
			// instance this bridge serves.
			unix.Close(nfd)
			continue
		}
		return newVsockConn(nfd, l.addr, &VsockAddr{CID: peer.CID, Port: peer.Port}), nil
	}
}

// admitCID is the listener's only access control: the peer must be the
// guest whose CID belongs to this bridge's service.
func admitCID(peer, want uint32) bool { return peer == want }

func (l *vsockListener) Close() error { return l.f.Close() }

func (l *vsockListener) Addr() net.Addr { return l.addr }

// vsockConn is an accepted vsock connection in the runtime poller.
type vsockConn struct {
	*os.File
	local, remote *VsockAddr
}

func newVsockConn(fd int, local, remote *VsockAddr) *vsockConn {
	return &vsockConn{File: os.NewFile(uintptr(fd), "vsock-conn"), local: local, remote: remote}
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

func (c *vsockConn) SetDeadline(t time.Time) error      { return c.File.SetDeadline(t) }
func (c *vsockConn) SetReadDeadline(t time.Time) error  { return c.File.SetReadDeadline(t) }
func (c *vsockConn) SetWriteDeadline(t time.Time) error { return c.File.SetWriteDeadline(t) }
