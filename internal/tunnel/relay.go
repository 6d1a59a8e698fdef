package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Ports a gateway serves on its tunnel address. They exist only inside the
// gateway's netstack, so they clash with nothing on the remote's host.
const (
	// ControlPort carries the gateway's HTTP control channel.
	ControlPort = 7001
	// ForwardPort accepts relayed connections: a RelayRequest naming the
	// target, then the connection's bytes.
	ForwardPort = 7002
)

// The relay protocol. The hub opens a TCP connection to the gateway's
// ForwardPort and sends
//
//	"BPMR" | version (1 byte, = 1) | length (1 byte) | target ("host:port")
//
// The gateway checks the target against its allow list, dials it on its own
// network and answers
//
//	status (1 byte) | length (1 byte) | message
//
// After RelayOK the connection is a plain byte pipe to the target. The
// answer costs one tunnel round trip per new connection; in exchange a
// refused or failed dial reaches the caller as an error rather than as a
// silently closed stream, and overlapping instance addresses in different
// remotes (every Docker host has a 172.17.0.0/16) never confuse routing,
// because the hub only ever routes to gateways' tunnel addresses.
const (
	relayMagic   = "BPMR"
	relayVersion = 1
)

// RelayStatus is the gateway's answer to a relay request.
type RelayStatus byte

// Relay statuses.
const (
	RelayOK         RelayStatus = 0
	RelayForbidden  RelayStatus = 1 // target outside the gateway's allow list
	RelayDialFailed RelayStatus = 2 // the gateway could not reach the target
	RelayBadRequest RelayStatus = 3
)

// Errors a relayed dial can end with, for errors.Is.
var (
	ErrRelayForbidden  = errors.New("target not allowed by the gateway")
	ErrRelayDialFailed = errors.New("gateway could not reach the target")
	ErrRelayProtocol   = errors.New("relay protocol error")
)

// WriteRelayRequest sends the request header naming target.
func WriteRelayRequest(w io.Writer, target string) error {
	if len(target) == 0 || len(target) > 255 {
		return fmt.Errorf("%w: target %q must be 1 to 255 bytes", ErrRelayProtocol, target)
	}
	b := make([]byte, 0, 6+len(target))
	b = append(b, relayMagic...)
	b = append(b, relayVersion, byte(len(target)))
	b = append(b, target...)
	_, err := w.Write(b)
	return err
}

// ReadRelayRequest reads the request header and returns the target.
func ReadRelayRequest(r io.Reader) (string, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", fmt.Errorf("%w: read header: %w", ErrRelayProtocol, err)
	}
	if string(h[:4]) != relayMagic {
		return "", fmt.Errorf("%w: bad magic %q", ErrRelayProtocol, h[:4])
	}
	if h[4] != relayVersion {
		return "", fmt.Errorf("%w: unsupported version %d", ErrRelayProtocol, h[4])
	}
	if h[5] == 0 {
		return "", fmt.Errorf("%w: empty target", ErrRelayProtocol)
	}
	t := make([]byte, h[5])
	if _, err := io.ReadFull(r, t); err != nil {
		return "", fmt.Errorf("%w: read target: %w", ErrRelayProtocol, err)
	}
	return string(t), nil
}

// WriteRelayReply sends the gateway's answer; msg is cut to 255 bytes.
func WriteRelayReply(w io.Writer, st RelayStatus, msg string) error {
	if len(msg) > 255 {
		msg = msg[:255]
	}
	b := append([]byte{byte(st), byte(len(msg))}, msg...)
	_, err := w.Write(b)
	return err
}

// ReadRelayReply reads the answer and turns a refusal into an error.
func ReadRelayReply(r io.Reader) error {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("%w: read reply: %w", ErrRelayProtocol, err)
	}
	msg := make([]byte, h[1])
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("%w: read reply: %w", ErrRelayProtocol, err)
	}
	switch RelayStatus(h[0]) {
	case RelayOK:
		return nil
	case RelayForbidden:
		return fmt.Errorf("%w: %s", ErrRelayForbidden, msg)
	case RelayDialFailed:
		return fmt.Errorf("%w: %s", ErrRelayDialFailed, msg)
	default:
		return fmt.Errorf("%w: status %d: %s", ErrRelayProtocol, h[0], msg)
	}
}

// relayDial performs the client side of the handshake on c, bounded by ctx.
func relayDial(ctx context.Context, c net.Conn, target string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := WriteRelayRequest(c, target); err != nil {
		return err
	}
	if err := ReadRelayReply(c); err != nil {
		return err
	}
	if !stop() {
		return ctx.Err()
	}
	return c.SetDeadline(time.Time{})
}
