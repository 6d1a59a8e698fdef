package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/tunnel"
)

// The bridge relay: how an instance reaches its bridge when it cannot share
// a unix socket with the gateway (a Kubernetes pod: the gateway is another
// pod, and pods share no files).
//
// The instance's pod runs a small sidecar (`bpm gateway bridge-relay`,
// RunBridgeRelay) that serves the instance's BRIDGE_SOCKET_PATH in a volume
// shared only inside the pod, and relays each connection over TCP to the
// gateway's BridgeRelayPort. The gateway speaks first, a 32-byte random
// challenge; the sidecar answers with a preamble that names the instance
// and proves it holds the instance's secret token without sending it:
//
//	"BPMB" | version (1 byte, = 2) | length (1 byte) | instance id
//	       | length (1 byte) | proof
//
// where proof is the hex HMAC-SHA256, keyed by SHA-256(token), of the
// challenge and the instance id (relayProof): good for that connection
// only, so one read off the cluster network cannot be replayed. The gateway
// admits the connection only when the manager registered that instance
// with that token (POST /v1/bridge/instances with "token"), then
// relays it exactly as a unix endpoint's (Spoke.DialBridge), and answers
//
//	status (1 byte) | length (1 byte) | message
//
// before the connection becomes the instance's gRPC byte stream.
//
// Why a token and not the source address: the relay port is a TCP port on
// the cluster network, where a pod's address says little (pods come and go,
// addresses are reused, a CNI may not enforce NetworkPolicies), whereas a
// socket file's permissions are what authenticates a local bridge. The
// token restores that: only a holder of instance X's token (its sidecar,
// which gets it from the instance's own Secret) can reach X's bridge, and
// the hub still checks that this gateway carries X (BridgePort), so a
// gateway compromise cannot widen it. A NetworkPolicy admitting only the
// remote's instance pods to the port is defence in depth, not the lock.
//
// The token never appears in logs, in GET /v1/bridge/instances (which
// shows "relay": true instead), or on a command line; the gateway keeps
// only its SHA-256 and compares in constant time.

// BridgeRelayPort is the TCP port a gateway serves bridge relay sidecars
// on, next to the tunnel's ControlPort, ForwardPort and BridgePort (which
// exist only inside the tunnel's netstack; this one is on the remote's own
// network, where the sidecars are).
const BridgeRelayPort = 7004

// Environment of the gateway (EnvBridgeListen) and of the relay sidecar.
// The sidecar reads everything from its environment so that the token is
// never on a command line, where `ps` and the pod spec would show it.
const (
	// EnvBridgeListen is the gateway's relay listen address, e.g. ":7004";
	// unset, the gateway serves no relay.
	EnvBridgeListen = "BPM_GATEWAY_BRIDGE_LISTEN"
	// EnvRelayToken is the instance's relay token. The manager passes it
	// to a relaying provider in DeployRequest.Env under this name; the
	// provider moves it to a secret only the sidecar reads.
	EnvRelayToken    = "BPM_BRIDGE_RELAY_TOKEN"
	EnvRelayListen   = "BPM_BRIDGE_RELAY_LISTEN"
	EnvRelayGateway  = "BPM_BRIDGE_RELAY_GATEWAY"
	EnvRelayInstance = "BPM_BRIDGE_RELAY_INSTANCE"
)

const (
	relayPreambleMagic = "BPMB"
	// Version 2: the preamble carries a proof (relayProof over the nonce the
	// gateway sent first), never the token, so a connection read off the
	// wire cannot be replayed.
	relayPreambleVersion = 2
	// relayNonceSize is the challenge the gateway sends on accept.
	relayNonceSize = 32
	// minRelayToken keeps a careless caller from registering a guessable
	// token: 32 bytes base64-encoded are 43 or 44.
	minRelayToken = 32
)

// The gateway answers a preamble with the tunnel relay's reply
// (tunnel.WriteRelayReply): RelayOK, RelayForbidden for an unknown instance
// or a wrong token (one answer for both), RelayDialFailed when the hub's
// bridge cannot be reached, RelayBadRequest for a bad preamble.

// ErrRelayRefused is a relay the gateway refused (bad preamble, unknown
// instance or wrong token); ErrRelayUnavailable one it admitted but could
// not carry to the hub.
var (
	ErrRelayRefused     = errors.New("bridge relay refused by the gateway")
	ErrRelayUnavailable = errors.New("bridge relay: the gateway could not reach the hub's bridge")
	errRelayPreamble    = errors.New("bridge relay preamble")
)

// WriteRelayPreamble sends the preamble naming instance id with proof (see
// relayProof; the token itself never goes on the wire).
func WriteRelayPreamble(w io.Writer, id, proof string) error {
	if len(id) == 0 || len(id) > 255 {
		return fmt.Errorf("%w: instance id must be 1 to 255 bytes", errRelayPreamble)
	}
	if len(proof) == 0 || len(proof) > 255 {
		return fmt.Errorf("%w: proof must be 1 to 255 bytes", errRelayPreamble)
	}
	b := make([]byte, 0, 7+len(id)+len(proof))
	b = append(b, relayPreambleMagic...)
	b = append(b, relayPreambleVersion, byte(len(id)))
	b = append(b, id...)
	b = append(b, byte(len(proof)))
	b = append(b, proof...)
	_, err := w.Write(b)
	return err
}

// ReadRelayPreamble reads a preamble, consuming exactly its bytes. Errors
// wrap errRelayPreamble and never quote the proof.
func ReadRelayPreamble(r io.Reader) (id, proof string, err error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", "", fmt.Errorf("%w: read header: %w", errRelayPreamble, err)
	}
	if string(h[:4]) != relayPreambleMagic {
		return "", "", fmt.Errorf("%w: bad magic %q", errRelayPreamble, h[:4])
	}
	if h[4] != relayPreambleVersion {
		return "", "", fmt.Errorf("%w: unsupported version %d", errRelayPreamble, h[4])
	}
	if h[5] == 0 {
		return "", "", fmt.Errorf("%w: empty instance id", errRelayPreamble)
	}
	b := make([]byte, int(h[5])+1)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", "", fmt.Errorf("%w: read instance id: %w", errRelayPreamble, err)
	}
	id = string(b[:h[5]])
	n := b[h[5]]
	if n == 0 {
		return "", "", fmt.Errorf("%w: empty proof", errRelayPreamble)
	}
	t := make([]byte, n)
	if _, err := io.ReadFull(r, t); err != nil {
		return "", "", fmt.Errorf("%w: read proof: %w", errRelayPreamble, err)
	}
	return id, string(t), nil
}

// readRelayStatus reads the gateway's answer, nil for OK: one it could
// not carry to the hub wraps ErrRelayUnavailable, any other refusal
// ErrRelayRefused.
func readRelayStatus(r io.Reader) error {
	err := tunnel.ReadRelayReply(r)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tunnel.ErrRelayDialFailed):
		return fmt.Errorf("%w: %w", ErrRelayUnavailable, err)
	}
	return fmt.Errorf("%w: %w", ErrRelayRefused, err)
}

// tokenDigest is what the gateway keeps of a token and the key of the
// proofs: it never holds the token itself, though the digest is as good as
// the token to whoever holds it, so it stays in memory only.
func tokenDigest(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// relayProof is what a relay client sends instead of its token: an
// HMAC-SHA256, keyed by the token's digest, of the gateway's nonce and the
// instance id, in hex. It is good for one connection only.
func relayProof(digest [sha256.Size]byte, nonce []byte, id string) string {
	mac := hmac.New(sha256.New, digest[:])
	mac.Write(nonce)
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil))
}

// relayAdmits reports whether proof answers nonce for instance id's
// registered token, in constant time.
func (g *Gateway) relayAdmits(id, proof string, nonce []byte) (known, ok bool) {
	g.bridges.mu.Lock()
	be, found := g.bridges.m[id]
	var key [sha256.Size]byte
	has := found && be.Relay
	if has {
		key = be.token
	}
	g.bridges.mu.Unlock()
	want := relayProof(key, nonce, id)
	match := subtle.ConstantTimeCompare([]byte(proof), []byte(want)) == 1
	return has, has && match
}

// startBridgeRelay listens on the configured relay address.
func (g *Gateway) startBridgeRelay(ctx context.Context) error {
	if g.cfg.BridgeListen == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.BridgeListen)
	if err != nil {
		return fmt.Errorf("gateway: bridge relay: %w", err)
	}
	g.relayLn = ln
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.serveBridgeRelay(ln) }()
	g.log.Info("gateway: bridge relay up", "listen", ln.Addr().String())
	return nil
}

// BridgeRelayAddr is where the relay listens, or "" without one.
func (g *Gateway) BridgeRelayAddr() string {
	if g.relayLn == nil {
		return ""
	}
	return g.relayLn.Addr().String()
}

func (g *Gateway) serveBridgeRelay(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go g.relayBridgeConn(c)
	}
}

// relayPreambleTimeout bounds how long a relay client may take to say who
// it is: a connection that says nothing holds no goroutine for long.
const relayPreambleTimeout = 10 * time.Second

// relayBridgeConn serves one relay connection. A refusal is logged once,
// with the instance id the client claimed and its address, never the
// token.
func (g *Gateway) relayBridgeConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(relayPreambleTimeout))
	// The challenge first: the client proves it holds the token for this
	// connection, so a preamble seen on the wire is worth nothing later.
	nonce := make([]byte, relayNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		g.log.Error("gateway: bridge relay: nonce", "err", err)
		return
	}
	if _, err := c.Write(nonce); err != nil {
		return
	}
	id, proof, err := ReadRelayPreamble(c)
	if err != nil {
		g.log.Warn("gateway: bridge relay refused", "from", c.RemoteAddr().String(), "reason", err.Error())
		_ = tunnel.WriteRelayReply(c, tunnel.RelayBadRequest, "bad preamble")
		return
	}
	known, ok := g.relayAdmits(id, proof, nonce)
	if !ok {
		reason := "wrong token"
		if !known {
			reason = "no relay endpoint for this instance"
		}
		g.log.Warn("gateway: bridge relay refused", "from", c.RemoteAddr().String(), "instance", id, "reason", reason)
		// One answer for both: a client learns nothing about which
		// instances exist.
		_ = tunnel.WriteRelayReply(c, tunnel.RelayForbidden, "refused")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	up, err := g.spoke.DialBridge(ctx, id)
	cancel()
	if err != nil {
		g.log.Warn("gateway: bridge relay failed", "instance", id, "err", err)
		_ = tunnel.WriteRelayReply(c, tunnel.RelayDialFailed, "the hub's bridge is not reachable")
		return
	}
	defer up.Close()
	if err := tunnel.WriteRelayReply(c, tunnel.RelayOK, ""); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	splice(c, up)
}

// DialBridgeRelay opens a relayed bridge connection for instance id at a
// gateway's relay address: on success the connection carries the
// instance's gRPC bridge traffic. A refusal wraps ErrRelayRefused.
func DialBridgeRelay(ctx context.Context, addr, id, token string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bridge relay: reach the gateway: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	nonce := make([]byte, relayNonceSize)
	if _, err := io.ReadFull(c, nonce); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: read the gateway's challenge: %w", ErrRelayRefused, err)
	}
	if err := WriteRelayPreamble(c, id, relayProof(tokenDigest(token), nonce, id)); err != nil {
		c.Close()
		return nil, fmt.Errorf("bridge relay: %w", err)
	}
	if err := readRelayStatus(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("bridge relay of %s: %w", id, err)
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// RelayConfig is the relay sidecar's configuration.
type RelayConfig struct {
	// Listen is the unix socket the instance dials (its
	// BRIDGE_SOCKET_PATH).
	Listen string
	// Gateway is the gateway's relay address, host:port.
	Gateway    string
	InstanceID string
	// Token is the instance's relay token. Never logged.
	Token string
}

// RelayConfigFromEnv reads the sidecar's configuration from the
// BPM_BRIDGE_RELAY_* variables, naming every missing or bad one at once
// (and never quoting the token).
func RelayConfigFromEnv(getenv func(string) string) (RelayConfig, error) {
	c := RelayConfig{Listen: getenv(EnvRelayListen), Gateway: getenv(EnvRelayGateway),
		InstanceID: getenv(EnvRelayInstance), Token: getenv(EnvRelayToken)}
	var errs []error
	switch {
	case c.Listen == "":
		errs = append(errs, fmt.Errorf("%s: required", EnvRelayListen))
	case !isCleanAbs(c.Listen):
		errs = append(errs, fmt.Errorf("%s: %q: want a clean absolute socket path", EnvRelayListen, c.Listen))
	}
	if c.Gateway == "" {
		errs = append(errs, fmt.Errorf("%s: required", EnvRelayGateway))
	} else if _, port, err := net.SplitHostPort(c.Gateway); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("%s: %q: want host:port", EnvRelayGateway, c.Gateway))
	}
	if c.InstanceID == "" || len(c.InstanceID) > 255 {
		errs = append(errs, fmt.Errorf("%s: want 1 to 255 bytes", EnvRelayInstance))
	}
	if len(c.Token) < minRelayToken || len(c.Token) > 255 {
		errs = append(errs, fmt.Errorf("%s: want %d to 255 bytes (it is set from the instance's secret)", EnvRelayToken, minRelayToken))
	}
	if err := errors.Join(errs...); err != nil {
		return RelayConfig{}, fmt.Errorf("bridge relay: %w", err)
	}
	return c, nil
}

// RunBridgeRelay serves cfg.Listen until ctx ends, relaying each connection
// to the gateway: the sidecar of an instance that cannot share a socket
// with its gateway. The socket gets a local bridge's modes (0700 directory,
// 0600 socket) through bridge.Unix. A connection the gateway refuses or
// cannot carry is closed, which the instance's gRPC client sees as an
// unavailable bridge and retries.
func RunBridgeRelay(ctx context.Context, cfg RelayConfig, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) error {
	u := &bridge.Unix{Path: cfg.Listen}
	ln, err := u.Listen(ctx)
	if err != nil {
		return fmt.Errorf("bridge relay: %w", err)
	}
	defer func() { _ = u.Cleanup() }()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	log.Info("bridge relay up", "listen", cfg.Listen, "gateway", cfg.Gateway, "instance", cfg.InstanceID)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bridge relay: accept: %w", err)
		}
		go func() {
			defer c.Close()
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			up, err := DialBridgeRelay(dctx, cfg.Gateway, cfg.InstanceID, cfg.Token)
			cancel()
			if err != nil {
				log.Warn("bridge relay failed", "instance", cfg.InstanceID, "err", err)
				return
			}
			defer up.Close()
			splice(c, up)
		}()
	}
}

// CheckBridgeRelay reports whether the relay's socket is there: the
// sidecar's startup probe, so the instance starts only once it can dial.
func CheckBridgeRelay(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s is not a socket", path)
	}
	return nil
}

func isCleanAbs(p string) bool {
	return len(p) > 0 && p[0] == '/' && filepath.Clean(p) == p
}

// validRelayListen checks a gateway relay listen address: host:port with a
// numeric port; an empty host means every address of the pod.
func validRelayListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want [host]:port, e.g. :%d", s, BridgeRelayPort)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: bad port", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: want an IP address, not a name", s)
		}
	}
	return nil
}
