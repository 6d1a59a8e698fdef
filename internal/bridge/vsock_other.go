//go:build !linux

package bridge

import (
	"errors"
	"net"
)

func listenVsock(port, wantCID uint32) (net.Listener, error) {
	return nil, errors.New("bridge: vsock: native vsock is supported on linux only")
}
