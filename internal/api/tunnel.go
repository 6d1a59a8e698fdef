package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Tunnel endpoints (served by the manager's hub):
//
//	GET /v1/tunnel/peers                  -> TunnelStatus
//	GET /v1/tunnel/peers/{remote}/config  -> TunnelPeerConfig
//
// {remote} unknown: 404 with code not_found. The config reply carries the
// remote's private key (that is its purpose: joining a plain WireGuard peer
// by hand), so the manager serves it only on its 0600 socket and never logs
// it.

// TunnelStatus is the reply to GET /v1/tunnel/peers.
type TunnelStatus struct {
	Hub   TunnelHub    `json:"hub" yaml:"hub"`
	Peers []TunnelPeer `json:"peers" yaml:"peers"`
}

// TunnelHub describes the hub's WireGuard endpoint. The hub starts only when
// a remote needs it; until then Running is false, PublicKey is empty and
// ListenPort is the configured port.
type TunnelHub struct {
	Running    bool   `json:"running" yaml:"running"`
	PublicKey  string `json:"public_key,omitempty" yaml:"public_key,omitempty"`
	Address    string `json:"address" yaml:"address"`   // tunnel address, e.g. 10.77.0.1
	CIDR       string `json:"cidr" yaml:"cidr"`         // tunnel network, e.g. 10.77.0.0/16
	Endpoint   string `json:"endpoint" yaml:"endpoint"` // host:port gateways dial
	ListenPort int    `json:"listen_port" yaml:"listen_port"`
}

// TunnelPeer is one remote's gateway as the hub sees it.
type TunnelPeer struct {
	Remote    string `json:"remote" yaml:"remote"`
	PublicKey string `json:"public_key" yaml:"public_key"`
	Address   string `json:"address" yaml:"address"`                       // the gateway's tunnel address
	Endpoint  string `json:"endpoint,omitempty" yaml:"endpoint,omitempty"` // where the hub last heard from it
	// LastHandshake is nil when no handshake has completed since the hub
	// started.
	LastHandshake *time.Time `json:"last_handshake,omitempty" yaml:"last_handshake,omitempty"`
	RxBytes       uint64     `json:"rx_bytes" yaml:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes" yaml:"tx_bytes"`
	// Health is "ok" (the gateway's /healthz answered), "unreachable"
	// (a handshake happened but the control channel did not answer: the
	// gateway is down, or the peer is a plain WireGuard peer without one),
	// or "unknown" (no handshake since the hub started, so nothing was
	// checked); HealthMessage says why when not ok.
	Health        string `json:"health" yaml:"health"`
	HealthMessage string `json:"health_message,omitempty" yaml:"health_message,omitempty"`
}

// TunnelPeerConfig is the reply to GET /v1/tunnel/peers/{remote}/config.
type TunnelPeerConfig struct {
	Remote string `json:"remote"`
	// Config is the wg-quick file text (tunnel.ExportPeerConfig).
	Config string `json:"config"`
}

// TunnelPeers returns the hub and its peers.
func (c *Client) TunnelPeers(ctx context.Context) (TunnelStatus, error) {
	var out TunnelStatus
	err := c.do(ctx, http.MethodGet, "/tunnel/peers", nil, &out)
	return out, err
}

// TunnelPeerConfig returns remote's wg-quick config.
func (c *Client) TunnelPeerConfig(ctx context.Context, remote string) (TunnelPeerConfig, error) {
	var out TunnelPeerConfig
	err := c.do(ctx, http.MethodGet, "/tunnel/peers/"+url.PathEscape(remote)+"/config", nil, &out)
	return out, err
}
