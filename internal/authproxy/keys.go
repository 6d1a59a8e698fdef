package authproxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// Key errors, checked with errors.Is.
var (
	ErrKeyFormat   = errors.New("authproxy: invalid api key format")
	ErrKeyInvalid  = errors.New("authproxy: invalid api key")
	ErrKeyExpired  = errors.New("authproxy: api key expired")
	ErrKeyDisabled = errors.New("authproxy: api key disabled")
	ErrKeyNotFound = errors.New("authproxy: api key not found")
)

const keyStorePrefix = "apikey/"

// KeyInfo is what is stored about an API key: never the key itself, only
// its Keccak-256 hash. It is safe to print.
type KeyInfo struct {
	KeyID     string      `json:"key_id"`
	Hash      string      `json:"hash"`
	ServiceID registry.ID `json:"service_id"`
	CreatedAt time.Time   `json:"created_at"`
	ExpiresAt time.Time   `json:"expires_at"`
	Enabled   bool        `json:"enabled"`
	// Headers are the key's default additional headers (already validated
	// and PII-hashed), injected into every token exchanged from it.
	Headers map[string]string `json:"headers,omitempty"`
	// Owner is the key that proved ownership ("Ecdsa:02ab…"), or
	// "operator" for a key minted by the operator.
	Owner string `json:"owner"`
	Label string `json:"label,omitempty"`
}

func (k *KeyInfo) usable(now time.Time) error {
	if !k.Enabled {
		return ErrKeyDisabled
	}
	if !now.Before(k.ExpiresAt) {
		return ErrKeyExpired
	}
	return nil
}

// KeyStore keeps API keys, hashed, in a registry.Store (under "apikey/")
// with an in-memory index for the proxy's per-request revocation check.
type KeyStore struct {
	store registry.Store
	mu    sync.RWMutex
	keys  map[string]*KeyInfo
}

// OpenKeyStore loads the keys kept in store.
func OpenKeyStore(ctx context.Context, store registry.Store) (*KeyStore, error) {
	ks := &KeyStore{store: store, keys: map[string]*KeyInfo{}}
	kvs, err := store.List(ctx, keyStorePrefix)
	if err != nil {
		return nil, fmt.Errorf("authproxy: load keys: %w", err)
	}
	for _, kv := range kvs {
		var ki KeyInfo
		if err := json.Unmarshal(kv.Value, &ki); err != nil {
			return nil, fmt.Errorf("authproxy: load key %s: %w", kv.Key, err)
		}
		ks.keys[ki.KeyID] = &ki
	}
	return ks, nil
}

// hashKey is the stored form: base64url-nopad(Keccak-256(whole key)).
func hashKey(key string) string { return b64.EncodeToString(keccak256([]byte(key))) }

func randomB64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// MintOptions are the optional parts of a new key.
type MintOptions struct {
	// TTL defaults to 90 days.
	TTL time.Duration
	// Headers are default additional headers; validated and PII-hashed.
	Headers map[string]string
	Owner   string
	Label   string
	// Prefix is the service's api_key_prefix, used verbatim.
	Prefix string
}

// DefaultAPIKeyTTL is how long a key lives unless told otherwise.
const DefaultAPIKeyTTL = 90 * 24 * time.Hour

// mint creates and stores a key: "<prefix><11-char id>.<32-char secret>".
func (ks *KeyStore) mint(ctx context.Context, id registry.ID, now time.Time, o MintOptions) (APIKey, *KeyInfo, error) {
	if strings.Contains(o.Prefix, ".") {
		// The key id is the text before the first '.', so a prefix with a
		// dot would make every key of the service look alike.
		return APIKey{}, nil, fmt.Errorf("authproxy: mint: api key prefix %q contains '.'", o.Prefix)
	}
	hdrs, err := normalizeHeaders(o.Headers)
	if err != nil {
		return APIKey{}, nil, fmt.Errorf("authproxy: mint: %w", err)
	}
	if o.TTL <= 0 {
		o.TTL = DefaultAPIKeyTTL
	}
	rid, err := randomB64(8)
	if err != nil {
		return APIKey{}, nil, fmt.Errorf("authproxy: mint: %w", err)
	}
	secret, err := randomB64(24)
	if err != nil {
		return APIKey{}, nil, fmt.Errorf("authproxy: mint: %w", err)
	}
	keyID := o.Prefix + rid
	full := keyID + "." + secret
	ki := &KeyInfo{
		KeyID: keyID, Hash: hashKey(full), ServiceID: id,
		CreatedAt: now.UTC().Truncate(time.Second), ExpiresAt: now.Add(o.TTL).UTC().Truncate(time.Second),
		Enabled: true, Headers: hdrs, Owner: o.Owner, Label: o.Label,
	}
	if err := ks.put(ctx, ki, true); err != nil {
		return APIKey{}, nil, err
	}
	return APIKey{s: full}, ki.clone(), nil
}

func (ks *KeyStore) put(ctx context.Context, ki *KeyInfo, create bool) error {
	val, err := json.Marshal(ki)
	if err != nil {
		return fmt.Errorf("authproxy: store key: %w", err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if _, ok := ks.keys[ki.KeyID]; ok && create {
		return fmt.Errorf("authproxy: store key: id collision")
	}
	if err := ks.store.Put(ctx, keyStorePrefix+ki.KeyID, val); err != nil {
		return fmt.Errorf("authproxy: store key: %w", err)
	}
	ks.keys[ki.KeyID] = ki
	return nil
}

func (k *KeyInfo) clone() *KeyInfo {
	c := *k
	if k.Headers != nil {
		c.Headers = make(map[string]string, len(k.Headers))
		for n, v := range k.Headers {
			c.Headers[n] = v
		}
	}
	return &c
}

// parseAPIKey splits a key into its id (the text before the first '.').
func parseAPIKey(key string) (keyID string, err error) {
	id, secret, ok := strings.Cut(key, ".")
	if !ok || id == "" || secret == "" || len(key) > 512 {
		return "", ErrKeyFormat
	}
	return id, nil
}

// Authenticate checks a presented key in full: known id, hash equal in
// constant time, enabled, unexpired.
func (ks *KeyStore) Authenticate(key string, now time.Time) (*KeyInfo, error) {
	id, err := parseAPIKey(key)
	if err != nil {
		return nil, err
	}
	ks.mu.RLock()
	ki, ok := ks.keys[id]
	ks.mu.RUnlock()
	// Hashed before the lookup's answer matters, once, so a miss costs
	// what a hit costs.
	h := hashKey(key)
	if !ok {
		return nil, ErrKeyInvalid
	}
	if subtle.ConstantTimeCompare([]byte(h), []byte(ki.Hash)) != 1 {
		return nil, ErrKeyInvalid
	}
	if err := ki.usable(now); err != nil {
		return nil, err
	}
	return ki, nil
}

// active reports whether the key id still stands (exists, enabled,
// unexpired) for service id: tokens die with their key.
func (ks *KeyStore) active(keyID string, id registry.ID, now time.Time) bool {
	ks.mu.RLock()
	ki, ok := ks.keys[keyID]
	ks.mu.RUnlock()
	return ok && ki.ServiceID == id && ki.usable(now) == nil
}

// Revoke disables a key; tokens exchanged from it stop working at once.
// Revoking a revoked key is not an error.
func (ks *KeyStore) Revoke(ctx context.Context, keyID string) error {
	ks.mu.RLock()
	ki, ok := ks.keys[keyID]
	ks.mu.RUnlock()
	if !ok {
		return fmt.Errorf("authproxy: revoke %s: %w", keyID, ErrKeyNotFound)
	}
	c := ki.clone()
	c.Enabled = false
	return ks.put(ctx, c, false)
}

// Get returns a copy of a key's record.
func (ks *KeyStore) Get(keyID string) (*KeyInfo, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	ki, ok := ks.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("authproxy: key %s: %w", keyID, ErrKeyNotFound)
	}
	return ki.clone(), nil
}

// List returns the keys of service id (all services if id is nil), oldest
// first.
func (ks *KeyStore) List(id *registry.ID) []*KeyInfo {
	ks.mu.RLock()
	var out []*KeyInfo
	for _, ki := range ks.keys {
		if id == nil || ki.ServiceID == *id {
			out = append(out, ki.clone())
		}
	}
	ks.mu.RUnlock()
	slices.SortFunc(out, func(a, b *KeyInfo) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.KeyID, b.KeyID)
	})
	return out
}

func ownerLabel(kt registry.KeyType, pub []byte) string {
	return kt.String() + ":" + hex.EncodeToString(pub)
}
