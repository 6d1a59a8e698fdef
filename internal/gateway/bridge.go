package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/bridge"
)

// BridgeEndpoint is a per-instance bridge endpoint the gateway serves on
// its remote: the body of POST /v1/bridge/instances and an entry of GET.
type BridgeEndpoint struct {
	InstanceID string `json:"instance_id"`
	// Listen is an absolute unix socket path (the instance's
	// BRIDGE_SOCKET_PATH) or a loopback TCP address 127.0.0.1:PORT or
	// [::1]:PORT. Empty when Token is set: the instance's sidecar serves
	// the socket and comes in through the relay port (bridgerelay.go).
	Listen string `json:"listen,omitempty"`
	// Token, in a request, admits the instance's relay sidecar on the
	// gateway's relay port. It is never echoed back: replies and GET
	// carry Relay instead.
	Token string `json:"token,omitempty"`
	// Relay is set in replies when the endpoint has a relay token.
	Relay bool `json:"relay,omitempty"`
	// Address is where the endpoint actually listens (set in replies; it
	// differs from Listen only for port 0).
	Address string `json:"address,omitempty"`
}

// PortReply is the reply to GET /v1/bridge/port.
type PortReply struct {
	Port uint16 `json:"port"`
}

// bridgeEndpoint is one running endpoint.
type bridgeEndpoint struct {
	BridgeEndpoint
	// token is the SHA-256 of the relay token (when Relay): the token
	// itself is not kept.
	token [32]byte
	ln    net.Listener
	unix  *bridge.Unix
	done  chan struct{}
}

// bridgeSet holds the endpoints by instance id.
type bridgeSet struct {
	mu sync.Mutex
	m  map[string]*bridgeEndpoint
}

// validateBridgeEndpoint checks a request before anything is bound. A TCP
// endpoint must be loopback: the bridge has no authentication of its own,
// so it must not be reachable from outside the remote's host.
func validateBridgeEndpoint(e BridgeEndpoint) error {
	var errs []error
	if e.InstanceID == "" || len(e.InstanceID) > 255 {
		errs = append(errs, errors.New("instance_id: want 1 to 255 bytes"))
	}
	if e.Token != "" && (len(e.Token) < minRelayToken || len(e.Token) > 255) {
		// The message never quotes the token.
		errs = append(errs, fmt.Errorf("token: want %d to 255 bytes", minRelayToken))
	}
	switch {
	case e.Listen == "" && e.Token != "":
		// A relay-only endpoint: nothing to bind here.
	case e.Listen == "":
		errs = append(errs, errors.New("listen: required (or a token, for a relay sidecar)"))
	case filepath.IsAbs(e.Listen):
		if filepath.Clean(e.Listen) != e.Listen {
			errs = append(errs, fmt.Errorf("listen %q: want a clean absolute path", e.Listen))
		}
	default:
		ap, err := netip.ParseAddrPort(e.Listen)
		if err != nil || !ap.Addr().IsLoopback() {
			errs = append(errs, fmt.Errorf("listen %q: want an absolute unix socket path or a loopback IP:port", e.Listen))
		}
	}
	return errors.Join(errs...)
}

// exposeBridge starts (or keeps, when identical) instance e.InstanceID's
// endpoint. A request naming another listen address replaces the old one,
// so the manager can always just say what it wants; another token replaces
// the old token (the listener stays).
func (g *Gateway) exposeBridge(e BridgeEndpoint) (BridgeEndpoint, bool, error) {
	if err := validateBridgeEndpoint(e); err != nil {
		return BridgeEndpoint{}, false, err
	}
	token, hasToken := tokenDigest(e.Token), e.Token != ""
	e.Token, e.Relay = "", hasToken
	g.bridges.mu.Lock()
	defer g.bridges.mu.Unlock()
	if cur, ok := g.bridges.m[e.InstanceID]; ok {
		if cur.Listen == e.Listen {
			cur.token, cur.Relay = token, hasToken
			return cur.BridgeEndpoint, false, nil
		}
		cur.close()
		delete(g.bridges.m, e.InstanceID)
	}
	be := &bridgeEndpoint{BridgeEndpoint: e, token: token, done: make(chan struct{})}
	if g.bridges.m == nil {
		g.bridges.m = map[string]*bridgeEndpoint{}
	}
	if e.Listen == "" {
		// Relay only: the sidecar's connections come in on the relay port.
		close(be.done)
		g.bridges.m[e.InstanceID] = be
		if g.relayLn == nil {
			g.log.Warn("gateway: bridge relay endpoint registered, but this gateway serves no relay port ("+EnvBridgeListen+" unset)", "instance", e.InstanceID)
		}
		g.log.Info("gateway: bridge relay endpoint up", "instance", e.InstanceID)
		return be.BridgeEndpoint, true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if filepath.IsAbs(e.Listen) {
		// The same checks and modes as a local bridge socket: parent 0700,
		// socket 0600, a stale socket replaced, anything else left alone.
		be.unix = &bridge.Unix{Path: e.Listen}
		be.ln, err = be.unix.Listen(ctx)
	} else {
		var lc net.ListenConfig
		be.ln, err = lc.Listen(ctx, "tcp", e.Listen)
	}
	if err != nil {
		return BridgeEndpoint{}, false, fmt.Errorf("bridge endpoint %s: %w", e.InstanceID, err)
	}
	be.Address = be.ln.Addr().String()
	g.bridges.m[e.InstanceID] = be
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.serveBridge(be) }()
	g.log.Info("gateway: bridge endpoint up", "instance", e.InstanceID, "listen", be.Address)
	return be.BridgeEndpoint, true, nil
}

// unexposeBridge closes instance id's endpoint; false if it had none.
func (g *Gateway) unexposeBridge(id string) bool {
	g.bridges.mu.Lock()
	be, ok := g.bridges.m[id]
	delete(g.bridges.m, id)
	g.bridges.mu.Unlock()
	if ok {
		be.close()
		g.log.Info("gateway: bridge endpoint closed", "instance", id)
	}
	return ok
}

func (g *Gateway) closeBridges() {
	g.bridges.mu.Lock()
	all := g.bridges.m
	g.bridges.m = nil
	g.bridges.mu.Unlock()
	for _, be := range all {
		be.close()
	}
}

func (be *bridgeEndpoint) close() {
	if be.ln == nil {
		return // relay only
	}
	be.ln.Close()
	<-be.done
	if be.unix != nil {
		_ = be.unix.Cleanup()
	}
}

// serveBridge relays each connection of the instance to the hub's
// tunnel.BridgePort, naming the instance; the hub decides whether this
// gateway may reach that instance's bridge.
func (g *Gateway) serveBridge(be *bridgeEndpoint) {
	defer close(be.done)
	for {
		c, err := be.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			up, err := g.spoke.DialBridge(ctx, be.InstanceID)
			cancel()
			if err != nil {
				g.log.Warn("gateway: bridge relay failed", "instance", be.InstanceID, "err", err)
				return
			}
			defer up.Close()
			splice(c, up)
		}()
	}
}

func (g *Gateway) bridgeEndpoints() []BridgeEndpoint {
	g.bridges.mu.Lock()
	defer g.bridges.mu.Unlock()
	out := make([]BridgeEndpoint, 0, len(g.bridges.m))
	for _, be := range g.bridges.m {
		out = append(out, be.BridgeEndpoint)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	return out
}

func (g *Gateway) handleBridgeExpose(w http.ResponseWriter, r *http.Request) {
	var e BridgeEndpoint
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", "body: "+err.Error())
		return
	}
	if err := validateBridgeEndpoint(e); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	out, created, err := g.exposeBridge(e)
	if err != nil {
		writeErr(w, http.StatusConflict, "unavailable", err.Error())
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, out)
}

func (g *Gateway) handleBridgeUnexpose(w http.ResponseWriter, r *http.Request) {
	if !g.unexposeBridge(r.PathValue("id")) {
		writeErr(w, http.StatusNotFound, "not_found", "no bridge endpoint for instance "+strconv.Quote(r.PathValue("id")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleBridgePort answers a tunnel bridge's RequestPort: the port must be
// free on the remote's host, where the service will bind it, not on the
// manager's.
func (g *Gateway) handleBridgePort(w http.ResponseWriter, r *http.Request) {
	pref, err := strconv.ParseUint(r.URL.Query().Get("preferred"), 10, 16)
	if err != nil && r.URL.Query().Get("preferred") != "" {
		writeErr(w, http.StatusBadRequest, "invalid", "preferred: want a port number")
		return
	}
	p, err := bridge.ProbePort(r.Context(), uint16(pref))
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, PortReply{Port: p})
}

// ExposeBridge asks the gateway to serve instance e.InstanceID's bridge
// endpoint at e.Listen. It is idempotent.
func (c *Client) ExposeBridge(ctx context.Context, e BridgeEndpoint) (BridgeEndpoint, error) {
	var out BridgeEndpoint
	err := c.do(ctx, http.MethodPost, "/v1/bridge/instances", e, &out)
	return out, err
}

// UnexposeBridge closes instance id's endpoint. An endpoint already gone is
// not an error: the caller wanted it gone.
func (c *Client) UnexposeBridge(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/bridge/instances/"+pathEscape(id), nil, nil)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// BridgeEndpoints lists the endpoints the gateway serves.
func (c *Client) BridgeEndpoints(ctx context.Context) ([]BridgeEndpoint, error) {
	var out []BridgeEndpoint
	err := c.get(ctx, "/v1/bridge/instances", &out)
	return out, err
}

// RequestPort asks the gateway for a port free on the remote's host.
func (c *Client) RequestPort(ctx context.Context, preferred uint16) (uint16, error) {
	var out PortReply
	err := c.get(ctx, "/v1/bridge/port?preferred="+strconv.Itoa(int(preferred)), &out)
	return out.Port, err
}
