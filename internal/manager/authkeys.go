package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/authproxy"
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/registry"
	"github.com/bpm-project/bpm/internal/state"
)

// maxLabel bounds an API key's label.
const maxLabel = 128

// CreateAuthKey mints an operator's API key for a service bpm runs: the
// service id's route must belong to a live instance. The reply carries the
// key in clear; nothing here logs it.
func (m *Manager) CreateAuthKey(ctx context.Context, req api.AuthKeyRequest) (api.AuthKeyCreated, error) {
	if req.ServiceID == nil {
		return api.AuthKeyCreated{}, api.Invalid("service_id is required")
	}
	sid := *req.ServiceID
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Second || d > api.MaxAuthKeyTTL {
			return api.AuthKeyCreated{}, api.Invalid("ttl %q: want a duration from 1s to 8760h (for example 720h)", req.TTL)
		}
		ttl = d
	}
	if len(req.Label) > maxLabel || !printable(req.Label) {
		return api.AuthKeyCreated{}, api.Invalid("label: at most %d printable ASCII characters", maxLabel)
	}
	if err := m.checkRunsService(ctx, sid); err != nil {
		return api.AuthKeyCreated{}, err
	}
	key, ki, err := m.proxy.srv.MintAPIKey(ctx, registry.ID{Main: sid}, authproxy.MintOptions{TTL: ttl, Label: req.Label})
	if errors.Is(err, registry.ErrNotFound) {
		// The route went away between the check and the mint.
		return api.AuthKeyCreated{}, fmt.Errorf("service id %d has no route: %w", sid, provider.ErrNotFound)
	}
	if err != nil {
		return api.AuthKeyCreated{}, fmt.Errorf("mint api key: %w", err)
	}
	m.log.Info("minted an api key", "key_id", ki.KeyID, "service_id", sid, "expires", ki.ExpiresAt)
	return api.AuthKeyCreated{AuthKey: toAPIKey(ki, time.Now()), APIKey: api.Secret(key.Reveal())}, nil
}

// checkRunsService refuses a service id bpm does not run: its route must
// exist and belong to a live instance with that service id.
func (m *Manager) checkRunsService(ctx context.Context, sid uint64) error {
	rec, err := m.registry.Get(registry.ID{Main: sid})
	if err == nil && rec.InstanceID != "" {
		in, gerr := m.store.GetInstance(ctx, rec.InstanceID)
		if gerr == nil && in.ServiceID == sid && !in.State.Final() &&
			in.State != provider.StateFailed && in.State != provider.StateTerminating {
			return nil
		}
	}
	for _, in := range m.cache.matching(state.Filter{}) {
		if in.ServiceID == sid && in.State != provider.StateFailed {
			return fmt.Errorf("service id %d: instance %s has no route yet (not answering, or its service id is routed elsewhere): %w",
				sid, in.ID, provider.ErrNotFound)
		}
	}
	return fmt.Errorf("service id %d: no live instance bpm runs serves it: %w", sid, provider.ErrNotFound)
}

// AuthKeys lists API keys (of one service when serviceID is set), never the
// keys themselves or their hashes.
func (m *Manager) AuthKeys(serviceID *uint64) []api.AuthKey {
	var id *registry.ID
	if serviceID != nil {
		id = &registry.ID{Main: *serviceID}
	}
	now := time.Now()
	out := []api.AuthKey{}
	for _, ki := range m.proxy.srv.Keys().List(id) {
		out = append(out, toAPIKey(ki, now))
	}
	return out
}

// RevokeAuthKey disables a key; tokens exchanged from it stop at once.
func (m *Manager) RevokeAuthKey(ctx context.Context, keyID string) (api.AuthKey, error) {
	err := m.proxy.srv.RevokeAPIKey(ctx, keyID)
	if errors.Is(err, authproxy.ErrKeyNotFound) {
		return api.AuthKey{}, fmt.Errorf("api key %s: %w", keyID, provider.ErrNotFound)
	}
	if err != nil {
		return api.AuthKey{}, fmt.Errorf("revoke api key %s: %w", keyID, err)
	}
	ki, err := m.proxy.srv.Keys().Get(keyID)
	if err != nil {
		return api.AuthKey{}, fmt.Errorf("revoke api key %s: %w", keyID, err)
	}
	m.log.Info("revoked an api key", "key_id", keyID, "service_id", ki.ServiceID.Main)
	return toAPIKey(ki, time.Now()), nil
}

func toAPIKey(ki *authproxy.KeyInfo, now time.Time) api.AuthKey {
	st := "active"
	switch {
	case !ki.Enabled:
		st = "revoked"
	case !now.Before(ki.ExpiresAt):
		st = "expired"
	}
	return api.AuthKey{
		KeyID: ki.KeyID, ServiceID: ki.ServiceID.Main, CreatedAt: ki.CreatedAt, ExpiresAt: ki.ExpiresAt,
		State: st, Owner: ki.Owner, Label: ki.Label,
	}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// authKeyRoutes adds the key endpoints to the local API.
func (m *Manager) authKeyRoutes(mux *http.ServeMux, p string) {
	mux.HandleFunc("POST "+p+"/auth/keys", func(w http.ResponseWriter, r *http.Request) {
		var req api.AuthKeyRequest
		if err := decodeStrict(r.Header.Get("Content-Type"), r.Body, &req); err != nil {
			writeError(w, err)
			return
		}
		out, err := m.CreateAuthKey(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		// The one reply that carries the key.
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusCreated, out)
	})
	mux.HandleFunc("GET "+p+"/auth/keys", func(w http.ResponseWriter, r *http.Request) {
		var sid *uint64
		if s := r.URL.Query().Get("service_id"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeError(w, api.Invalid("service_id: %q is not a service id", s))
				return
			}
			sid = &v
		}
		writeJSON(w, http.StatusOK, api.AuthKeyList{Keys: m.AuthKeys(sid)})
	})
	mux.HandleFunc("DELETE "+p+"/auth/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		k, err := m.RevokeAuthKey(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, k)
	})
}

// decodeStrict parses a JSON request body as DecodeDeployRequest does: JSON
// content type, bounded size, no unknown fields, no trailing data.
func decodeStrict(contentType string, body io.Reader, v any) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return api.Invalid("content type must be application/json, got %q", contentType)
	}
	data, err := io.ReadAll(io.LimitReader(body, maxRequestBody+1))
	if err != nil {
		return api.Invalid("read body: %v", err)
	}
	if len(data) > maxRequestBody {
		return api.Invalid("body larger than %d bytes", maxRequestBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Invalid("request: %v", err)
	}
	if dec.More() {
		return api.Invalid("request: trailing data after the JSON object")
	}
	return nil
}

// revokeServiceKeys disables every API key of a service id once no live
// instance serves it any more. Keys are bound to a service id, not to an
// instance; without this, a key minted for a terminated instance would open
// whatever is deployed under the same service id next.
func (m *Manager) revokeServiceKeys(ctx context.Context, serviceID uint64) {
	if m.proxy.srv == nil {
		return
	}
	live, err := m.store.ListInstances(ctx, state.Filter{ServiceID: &serviceID})
	if err != nil {
		m.log.Error("revoke keys: list instances", "service_id", serviceID, "err", err)
		return
	}
	for _, in := range live {
		if in.State != provider.StateFailed && in.State != provider.StateTerminating {
			return // still served
		}
	}
	id := registry.ID{Main: serviceID}
	for _, ki := range m.proxy.srv.Keys().List(&id) {
		if !ki.Enabled {
			continue
		}
		if err := m.proxy.srv.RevokeAPIKey(ctx, ki.KeyID); err != nil {
			m.log.Error("revoke key of a terminated service", "key_id", ki.KeyID, "service_id", serviceID, "err", err)
			continue
		}
		m.log.Info("revoked an api key: its service is no longer served", "key_id", ki.KeyID, "service_id", serviceID)
	}
}
