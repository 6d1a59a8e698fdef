package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/bridge"
	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
)

// bridgeTimeout bounds each bridge call. The bridge is a local socket: a
// call that takes longer means nobody is serving it, and echo should get on
// with serving rather than hang its startup or its shutdown.
const bridgeTimeout = 5 * time.Second

// parseOwners reads ECHO_OWNERS: comma-separated "ecdsa:<hex>" (33-byte
// compressed or 65-byte uncompressed secp256k1, as the proxy accepts) and
// "sr25519:<hex>" (32 bytes). It is checked at startup, before anything
// listens, so a typo fails loudly instead of registering a key that can
// never log in.
func parseOwners(s string) ([]*bridgepb.ServiceOwner, error) {
	var owners []*bridgepb.ServiceOwner
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		kind, hexKey, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("ECHO_OWNERS: %q: want ecdsa:<hex> or sr25519:<hex>", item)
		}
		key, err := hex.DecodeString(strings.TrimPrefix(hexKey, "0x"))
		if err != nil {
			return nil, fmt.Errorf("ECHO_OWNERS: %q: key is not hex", item)
		}
		o := &bridgepb.ServiceOwner{KeyBytes: key}
		switch strings.ToLower(kind) {
		case "ecdsa":
			o.KeyType = bridgepb.ServiceOwner_ECDSA
			if !(len(key) == 33 && (key[0] == 2 || key[0] == 3)) && !(len(key) == 65 && key[0] == 4) {
				return nil, fmt.Errorf("ECHO_OWNERS: %q: an ecdsa key is 33 bytes (02/03…) or 65 bytes (04…)", item)
			}
		case "sr25519":
			o.KeyType = bridgepb.ServiceOwner_SR25519
			if len(key) != 32 {
				return nil, fmt.Errorf("ECHO_OWNERS: %q: an sr25519 key is 32 bytes", item)
			}
		default:
			return nil, fmt.Errorf("ECHO_OWNERS: %q: key type must be ecdsa or sr25519", item)
		}
		owners = append(owners, o)
	}
	return owners, nil
}

// upstreamURL is what the proxy should forward to. It names the bound port
// (PORT may be 0) and a loopback host, since bpm's proxy only forwards to
// loopback for local instances; a wildcard listen (ECHO_LISTEN=0.0.0.0) is
// reached on 127.0.0.1.
func upstreamURL(bound net.Addr) string {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return "http://" + bound.String()
	}
	host := "127.0.0.1"
	if tcp.IP.IsLoopback() {
		host = tcp.IP.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// registration is echo's record with the manager's bridge.
type registration struct {
	client    *bridge.Client
	serviceID uint64
}

// register tells the manager's bridge where echo listens, as a Blueprint
// service does at startup: Ping (the manager's "alive" signal), then
// RegisterBlueprintServiceProxy. Unlike the SDK's runner, which aborts when
// the bridge is missing, echo only logs one line and goes on serving: it
// must also run standalone and under managers that do not serve the bridge.
// It returns nil when nothing was registered.
func register(ctx context.Context, getenv func(string) string, log *slog.Logger, owners []*bridgepb.ServiceOwner, upstream string) *registration {
	path := getenv("BRIDGE_SOCKET_PATH")
	if path == "" {
		return nil
	}
	sid, err := strconv.ParseUint(getenv("SERVICE_ID"), 10, 64)
	if err != nil {
		log.Warn("bridge: not registering: SERVICE_ID is missing or not a number", "socket", path)
		return nil
	}
	c, err := bridge.DialUnix(path)
	if err != nil {
		log.Warn("bridge: unavailable, serving without registration", "socket", path, "err", err)
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, bridgeTimeout)
	defer cancel()
	if _, err := c.Ping(cctx, &emptypb.Empty{}); err != nil {
		c.Close()
		log.Warn("bridge: unreachable, serving without registration", "socket", path, "err", err)
		return nil
	}
	_, err = c.RegisterBlueprintServiceProxy(cctx, &bridgepb.RegisterBlueprintServiceProxyRequest{
		ServiceId:    sid,
		ApiKeyPrefix: getenv("ECHO_API_KEY_PREFIX"),
		UpstreamUrl:  upstream,
		Owners:       owners,
	})
	if err != nil {
		c.Close()
		log.Warn("bridge: registration refused, serving without it", "service", sid, "err", err)
		return nil
	}
	if len(owners) == 0 {
		log.Warn("bridge: registered with no owners: nobody can obtain an API key for this service (set ECHO_OWNERS)",
			"service", sid, "upstream", upstream)
	} else {
		log.Info("bridge: registered", "service", sid, "upstream", upstream, "owners", len(owners))
	}
	return &registration{client: c, serviceID: sid}
}

// unregister removes echo's record before it stops, so the proxy answers
// 404 ("not registered") rather than 502 for a service that is going away.
// ctx is the already-cancelled run context: the call gets its own deadline.
func (r *registration) unregister(ctx context.Context, log *slog.Logger) {
	if r == nil {
		return
	}
	defer r.client.Close()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bridgeTimeout)
	defer cancel()
	_, err := r.client.UnregisterBlueprintServiceProxy(cctx, &bridgepb.UnregisterBlueprintServiceProxyRequest{ServiceId: r.serviceID})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("bridge: unregister failed", "service", r.serviceID, "err", err)
		return
	}
	log.Info("bridge: unregistered", "service", r.serviceID)
}
