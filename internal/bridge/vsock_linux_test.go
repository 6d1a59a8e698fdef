//go:build linux

package bridge

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/registry"
)

// dialVsock connects to cid:port, for tests over the vsock loopback
// transport (CID 1), which exists only where the kernel has vsock_loopback.
func dialVsock(cid, port uint32) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking puts the file in the runtime poller, so deadlines work.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "vsock-client"), nil
}

func TestNativeVsockLoopback(t *testing.T) {
	const port = 58001
	ln, err := listenVsock(port, unix.VMADDR_CID_LOCAL)
	if err != nil {
		t.Skipf("no vsock here: %v", err)
	}
	defer ln.Close()
	c, err := dialVsock(unix.VMADDR_CID_LOCAL, port)
	if err != nil {
		t.Skipf("no vsock loopback transport here: %v", err)
	}
	defer c.Close()

	// A real bridge over the native listener, admitting CID 1.
	reg, _ := registry.Open(context.Background(), registry.NewMemStore(), nil)
	srv, _ := New(Config{Registry: reg})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)
	c.Close()
	client, err := DialFunc(func(context.Context) (net.Conn, error) {
		f, err := dialVsock(unix.VMADDR_CID_LOCAL, port)
		if err != nil {
			return nil, err
		}
		return &vsockConn{File: f, local: &VsockAddr{}, remote: &VsockAddr{CID: unix.VMADDR_CID_LOCAL, Port: port}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := client.Ping(pctx, &emptypb.Empty{}); err != nil {
		t.Fatalf("ping over vsock: %v", err)
	}

	// A listener that wants another CID drops the loopback peer.
	other, err := listenVsock(port+1, 77)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	acc := make(chan error, 1)
	go func() { _, err := other.Accept(); acc <- err }()
	c2, err := dialVsock(unix.VMADDR_CID_LOCAL, port+1)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err != io.EOF && err != nil && !os.IsTimeout(err) {
		t.Logf("read after refusal: %v", err)
	}
	other.Close()
	if err := <-acc; err == nil {
		t.Fatal("listener admitted a peer with the wrong CID")
	}
}
