package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Operators' API key endpoints (served by the manager, backed by the auth
// proxy's key store):
//
//	POST   /v1/auth/keys              AuthKeyRequest -> 201 AuthKeyCreated
//	GET    /v1/auth/keys?service_id=N -> AuthKeyList
//	DELETE /v1/auth/keys/{id}         -> AuthKey (now disabled)
//
// Keys are minted only for services bpm runs: a live instance must hold the
// service id's route. The created reply carries the key in clear, once;
// the manager sends it with Cache-Control: no-store and never logs it.
// Nothing else ever carries a key or its hash.

// AuthKeyRequest asks for a new API key.
type AuthKeyRequest struct {
	// ServiceID is required (0 is a valid id, so it is a pointer).
	ServiceID *uint64 `json:"service_id"`
	// TTL is a Go duration ("720h"); empty means the proxy's default
	// (90 days). At most MaxAuthKeyTTL.
	TTL string `json:"ttl,omitempty"`
	// Label is a note for the operator (at most 128 printable characters).
	Label string `json:"label,omitempty"`
}

// MaxAuthKeyTTL is the longest an operator-minted key may live.
const MaxAuthKeyTTL = 365 * 24 * time.Hour

// AuthKey describes an API key. It never holds the key or its hash.
type AuthKey struct {
	KeyID     string    `json:"key_id" yaml:"key_id"`
	ServiceID uint64    `json:"service_id" yaml:"service_id"`
	CreatedAt time.Time `json:"created_at" yaml:"created_at"`
	ExpiresAt time.Time `json:"expires_at" yaml:"expires_at"`
	// State is active, expired or revoked.
	State string `json:"state" yaml:"state"`
	// Owner is "operator" for a minted key, else the owner key that proved
	// itself ("Ecdsa:02ab…").
	Owner string `json:"owner" yaml:"owner"`
	Label string `json:"label,omitempty" yaml:"label,omitempty"`
}

// AuthKeyCreated is the reply to a mint: the key, once.
type AuthKeyCreated struct {
	AuthKey
	// APIKey is the key in clear. It is shown once; only its hash is kept.
	APIKey Secret `json:"api_key"`
}

// AuthKeyList is the reply to a list.
type AuthKeyList struct {
	Keys []AuthKey `json:"keys" yaml:"keys"`
}

// Secret is a string that prints, formats and logs redacted; only its JSON
// encoding (the one reply that hands it over) and Reveal show the value.
type Secret string

// Reveal returns the value in clear.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer, redacted.
func (Secret) String() string { return "[REDACTED]" }

// Format implements fmt.Formatter, redacted for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[REDACTED]")) }

// LogValue implements slog.LogValuer, redacted.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// CreateAuthKey mints an API key.
func (c *Client) CreateAuthKey(ctx context.Context, req AuthKeyRequest) (AuthKeyCreated, error) {
	var out AuthKeyCreated
	err := c.do(ctx, http.MethodPost, "/auth/keys", req, &out)
	return out, err
}

// AuthKeys lists the keys of one service (nil: every service).
func (c *Client) AuthKeys(ctx context.Context, serviceID *uint64) ([]AuthKey, error) {
	path := "/auth/keys"
	if serviceID != nil {
		path += "?service_id=" + strconv.FormatUint(*serviceID, 10)
	}
	var out AuthKeyList
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Keys, err
}

// RevokeAuthKey disables a key; tokens exchanged from it stop working at once.
func (c *Client) RevokeAuthKey(ctx context.Context, keyID string) (AuthKey, error) {
	var out AuthKey
	err := c.do(ctx, http.MethodDelete, "/auth/keys/"+url.PathEscape(keyID), nil, &out)
	return out, err
}
