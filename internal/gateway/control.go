package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/bpm-project/bpm/internal/health"
	"github.com/bpm-project/bpm/internal/tunnel"
	"github.com/bpm-project/bpm/internal/version"
)

// Status is the reply to GET /healthz.
type Status struct {
	Status        string    `json:"status"` // "ok"
	Version       string    `json:"version"`
	Address       string    `json:"address"`
	PublicKey     string    `json:"public_key"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	LastProbe     time.Time `json:"last_probe,omitzero"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
	Allow         []string  `json:"allow"`
}

// HealthResult is the reply to GET /v1/instances/health.
type HealthResult struct {
	Address string `json:"address"`
	Kind    string `json:"kind"` // "tcp" or "http"
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, kind, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = kind, msg
	writeJSON(w, code, b)
}

func (g *Gateway) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", g.handleHealthz)
	mux.HandleFunc("GET /v1/instances/health", g.handleInstanceHealth)
	mux.HandleFunc("POST /v1/bridge/instances", g.handleBridgeExpose)
	mux.HandleFunc("GET /v1/bridge/instances", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.bridgeEndpoints())
	})
	mux.HandleFunc("DELETE /v1/bridge/instances/{id}", g.handleBridgeUnexpose)
	mux.HandleFunc("GET /v1/bridge/port", g.handleBridgePort)
	return mux
}

func (g *Gateway) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	st := Status{Status: "ok", Version: version.Version, Address: g.cfg.Address.String(),
		PublicKey: g.spoke.PublicKey().String(), LastProbe: g.spoke.LastProbe()}
	for _, p := range g.cfg.Allow {
		st.Allow = append(st.Allow, p.String())
	}
	if hs, err := g.spoke.HubStats(); err == nil {
		st.LastHandshake, st.RxBytes, st.TxBytes = hs.LastHandshake, hs.RxBytes, hs.TxBytes
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) handleInstanceHealth(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr := q.Get("addr")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", fmt.Sprintf("addr %q: want host:port", addr))
		return
	}
	if ip, err := netip.ParseAddr(host); err == nil && !g.cfg.Allowed(ip) {
		writeErr(w, http.StatusForbidden, "invalid", fmt.Sprintf("addr %s: %v", addr, errForbidden))
		return
	}
	spec := health.Spec{Address: addr, HTTPPath: q.Get("http_path"), Timeout: health.DefaultTimeout}
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > time.Minute {
			writeErr(w, http.StatusBadRequest, "invalid", fmt.Sprintf("timeout %q: want a duration up to 1m", t))
			return
		}
		spec.Timeout = d
	}
	res := HealthResult{Address: addr, Kind: spec.Kind(), Healthy: true}
	if err := health.Check(r.Context(), spec); err != nil {
		res.Healthy, res.Error = false, err.Error()
	}
	writeJSON(w, http.StatusOK, res)
}

// Client talks to a gateway's control channel through the tunnel.
type Client struct {
	hc   *http.Client
	base string
}

// DialFunc dials inside the tunnel (tunnel.Hub.DialTunnel).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewClient returns a client for the gateway at tunnel address gw.
func NewClient(dial DialFunc, gw netip.Addr) *Client {
	tr := &http.Transport{DialContext: dial, DisableCompression: true, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://" + netip.AddrPortFrom(gw, tunnel.ControlPort).String()}
}

// Healthz returns the gateway's status.
func (c *Client) Healthz(ctx context.Context) (Status, error) {
	var st Status
	err := c.get(ctx, "/healthz", &st)
	return st, err
}

// InstanceHealth runs spec's check from inside the remote.
func (c *Client) InstanceHealth(ctx context.Context, spec health.Spec) (HealthResult, error) {
	q := url.Values{"addr": {spec.Address}}
	if spec.HTTPPath != "" {
		q.Set("http_path", spec.HTTPPath)
	}
	if spec.Timeout > 0 {
		q.Set("timeout", spec.Timeout.String())
	}
	var res HealthResult
	err := c.get(ctx, "/v1/instances/health?"+q.Encode(), &res)
	return res, err
}

// CloseIdleConnections drops pooled connections (after a peer change).
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// errNotFound marks a 404 from the control channel.
var errNotFound = errors.New("not found")

func pathEscape(s string) string { return url.PathEscape(s) }

// do sends one control request; body, if not nil, goes as JSON, and out,
// if not nil, receives a JSON reply.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("gateway control: %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("gateway control: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("gateway control: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("gateway control: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var nf error
		if resp.StatusCode == http.StatusNotFound {
			nf = errNotFound
		}
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
			return errors.Join(fmt.Errorf("gateway control: %s %s: %s (%s)", method, path, eb.Error.Message, strconv.Itoa(resp.StatusCode)), nf)
		}
		return errors.Join(fmt.Errorf("gateway control: %s %s: %s", method, path, resp.Status), nf)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("gateway control: decode %s: %w", path, err)
	}
	return nil
}
