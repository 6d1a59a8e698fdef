package authproxy

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// DefaultAddr is where the proxy listens unless told otherwise. Upstream
// binds 0.0.0.0:8276; bpm binds loopback, so exposing the proxy beyond this
// machine is a deliberate operator choice.
const DefaultAddr = "127.0.0.1:8276"

// DefaultChallengeTTL is how long an issued challenge may be answered.
const DefaultChallengeTTL = 30 * time.Second

// maxBody bounds the JSON bodies of the auth endpoints.
const maxBody = 64 << 10

// Dialer reaches a tunnelled upstream: the gateway's dialer over WireGuard.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dialers finds the dialer of a gateway (registry.Record.Gateway). It is
// asked on every new upstream connection, so a gateway that reconnects is
// picked up.
type Dialers interface {
	DialerFor(gateway string) (Dialer, error)
}

// DialerMap is a fixed Dialers.
type DialerMap map[string]Dialer

// DialerFor implements Dialers.
func (m DialerMap) DialerFor(gw string) (Dialer, error) {
	d, ok := m[gw]
	if !ok {
		return nil, fmt.Errorf("authproxy: no tunnel to gateway %q", gw)
	}
	return d, nil
}

// Config configures a Server.
type Config struct {
	// Registry routes service ids to upstreams. Required.
	Registry *registry.Registry
	// Keys holds the API keys. Required (OpenKeyStore over the same Store as
	// the registry is fine).
	Keys *KeyStore
	// TokenKey seals tokens. Nil: a random key for this process, so tokens
	// die with it (they are short-lived anyway).
	TokenKey *TokenKey
	// Dialers reaches tunnel-transport upstreams; nil refuses them (502).
	Dialers Dialers
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	ChallengeTTL time.Duration // default 30 s
	TokenTTL     time.Duration // default 15 min, capped at MaxTokenTTL
	APIKeyTTL    time.Duration // default 90 days

	// AllowRawAPIKeys lets proxied requests authenticate with an API key
	// instead of a token, as upstream does. Off by default: a long-lived key
	// then never travels on every request.
	AllowRawAPIKeys bool
	// TLSEnvelopeKey (32 bytes) opens the encrypted upstream CA bundle and
	// client certificate of https upstreams' TLS profiles.
	TLSEnvelopeKey []byte
}

// Server is the auth proxy.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	key   *TokenKey
	keys  *KeyStore
	reg   *registry.Registry
	chals *challenges
	// tokens caches parsed tokens: keyed by the token itself, so a cached
	// entry can only be hit by someone holding that exact token.
	tokens tokenCache

	routesMu sync.RWMutex
	routes   map[registry.ID]*route
	unsub    func()
}

// New returns a Server. Call Close to release its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil || cfg.Keys == nil {
		return nil, errors.New("authproxy: config: Registry and Keys are required")
	}
	if cfg.TLSEnvelopeKey != nil && len(cfg.TLSEnvelopeKey) != 32 {
		return nil, errors.New("authproxy: config: TLSEnvelopeKey must be 32 bytes")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, key: cfg.TokenKey, keys: cfg.Keys, reg: cfg.Registry,
		chals: newChallenges(), routes: map[registry.ID]*route{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.key == nil {
		k, err := NewTokenKey()
		if err != nil {
			return nil, err
		}
		s.key = k
	}
	if s.cfg.ChallengeTTL <= 0 {
		s.cfg.ChallengeTTL = DefaultChallengeTTL
	}
	if s.cfg.TokenTTL <= 0 {
		s.cfg.TokenTTL = DefaultTokenTTL
	}
	s.cfg.TokenTTL = min(s.cfg.TokenTTL, MaxTokenTTL)
	if s.cfg.APIKeyTTL <= 0 {
		s.cfg.APIKeyTTL = DefaultAPIKeyTTL
	}
	// Keep the routing table current: a changed or removed record drops
	// its cached route (and its idle upstream connections).
	s.unsub = cfg.Registry.Subscribe(func(ev registry.Event) { s.dropRoute(ev.ID) })
	return s, nil
}

// Keys returns the API key store (for the operator's mint/revoke API).
func (s *Server) Keys() *KeyStore { return s.keys }

// Close stops following the registry and closes idle upstream connections.
func (s *Server) Close() {
	s.unsub()
	s.routesMu.Lock()
	for id, r := range s.routes {
		r.close()
		delete(s.routes, id)
	}
	s.routesMu.Unlock()
}

// MintAPIKey issues an API key for a registered service on the operator's
// behalf (the CLI's `bpm auth key create`). The key is returned in clear
// once; only its hash is kept.
func (s *Server) MintAPIKey(ctx context.Context, id registry.ID, o MintOptions) (APIKey, *KeyInfo, error) {
	rec, ok := s.reg.Lookup(id)
	if !ok {
		return APIKey{}, nil, fmt.Errorf("authproxy: mint for %s: %w", id, registry.ErrNotFound)
	}
	o.Prefix = rec.APIKeyPrefix
	if o.Owner == "" {
		o.Owner = "operator"
	}
	if o.TTL <= 0 {
		o.TTL = s.cfg.APIKeyTTL
	}
	return s.keys.mint(ctx, id, s.now(), o)
}

// RevokeAPIKey disables a key; its tokens stop working at once.
func (s *Server) RevokeAPIKey(ctx context.Context, keyID string) error {
	return s.keys.Revoke(ctx, keyID)
}

// Handler returns the proxy's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve serves HTTP/1.1 and h2c on ln until ctx is done, then shuts down
// gracefully (5 s, then hard).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler:           s.Handler(),
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("authproxy: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}

// ListenAndServe listens on addr (DefaultAddr if empty) and serves.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("authproxy: listen: %w", err)
	}
	s.log.Info("auth proxy listening", "addr", ln.Addr().String())
	return s.Serve(ctx, ln)
}

type ctxKey struct{}

// reqInfo travels from serveHTTP to the reverse proxy's Rewrite.
type reqInfo struct {
	requestID string
	headers   map[string]string
	scopes    string
}

// requestID keeps a client's x-request-id when it is a sane token (so
// traces join up) and makes a UUID otherwise.
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" && len(v) <= 128 {
		ok := true
		for i := 0; i < len(v); i++ {
			if c := v[i]; c <= 0x20 || c >= 0x7f {
				ok = false
				break
			}
		}
		if ok {
			return v
		}
	}
	return uuidV4()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rid := requestID(r)
	switch r.URL.Path {
	case "/v1/auth/challenge":
		s.authEndpoint(w, r, rid, s.handleChallenge)
	case "/v1/auth/verify":
		s.authEndpoint(w, r, rid, s.handleVerify)
	case "/v1/auth/exchange":
		s.authEndpoint(w, r, rid, s.handleExchange)
	case "/v1/oauth/token":
		s.authEndpoint(w, r, rid, s.handleOAuth)
	case "/v1/auth/certificates":
		// Unauthenticated upstream; bpm does not serve it.
		w.Header().Set("X-Request-Id", rid)
		http.Error(w, "not available in bpm", http.StatusNotFound)
	default:
		if strings.HasPrefix(r.URL.Path, "/v1/admin/") {
			w.Header().Set("X-Request-Id", rid)
			http.Error(w, "not available in bpm", http.StatusNotFound)
			return
		}
		s.proxy(w, r, rid)
	}
}

func (s *Server) authEndpoint(w http.ResponseWriter, r *http.Request, rid string, h func(http.ResponseWriter, *http.Request)) {
	w.Header().Set("X-Request-Id", rid)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	h(w, r)
}

// serviceIDHeader reads X-Service-Id: missing → 428, unparsable → 400.
func serviceIDHeader(w http.ResponseWriter, r *http.Request) (registry.ID, bool) {
	v := r.Header.Values("X-Service-Id")
	if len(v) == 0 {
		http.Error(w, "Missing X-Service-Id header", http.StatusPreconditionRequired)
		return registry.ID{}, false
	}
	id, err := registry.ParseID(v[0])
	if err != nil || len(v) > 1 {
		http.Error(w, "Invalid X-Service-Id header", http.StatusBadRequest)
		return registry.ID{}, false
	}
	return id, true
}

// fieldError is a well-formed JSON body with a bad field: 422.
type fieldError struct{ msg string }

func (e *fieldError) Error() string { return e.msg }

// decodeJSON reads a JSON body with upstream's rejections: 415 without a
// JSON content type, 400 for bad syntax, 422 for wrong types or fields.
// It writes the rejection and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, v interface{ check() error }) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		http.Error(w, "Expected request with `Content-Type: application/json`", http.StatusUnsupportedMediaType)
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "Failed to read body", http.StatusRequestEntityTooLarge)
		return false
	}
	if !json.Valid(body) {
		http.Error(w, "Failed to parse the request body as JSON", http.StatusBadRequest)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		http.Error(w, "Failed to deserialize the JSON body: "+err.Error(), http.StatusUnprocessableEntity)
		return false
	}
	if err := v.check(); err != nil {
		http.Error(w, "Failed to deserialize the JSON body: "+err.Error(), http.StatusUnprocessableEntity)
		return false
	}
	return true
}

// hexBytes is a JSON string of hex without 0x, any case.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return &fieldError{"hex must not start with 0x"}
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return &fieldError{"invalid hex"}
	}
	*h = d
	return nil
}

// keyType is the JSON key_type string.
type keyType registry.KeyType

func (k *keyType) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch s {
	case "Unknown":
		*k = keyType(registry.KeyTypeUnknown)
	case "Ecdsa":
		*k = keyType(registry.KeyTypeEcdsa)
	case "Sr25519":
		*k = keyType(registry.KeyTypeSr25519)
	case "Bn254Bls":
		*k = keyType(registry.KeyTypeBn254Bls)
	default:
		return &fieldError{"unknown key_type " + strconv.Quote(s)}
	}
	return nil
}

type challengeRequest struct {
	PubKey  *hexBytes `json:"pub_key"`
	KeyType *keyType  `json:"key_type"`
}

func (c *challengeRequest) check() error {
	if c.PubKey == nil {
		return errors.New("missing field `pub_key`")
	}
	if c.KeyType == nil {
		return errors.New("missing field `key_type`")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) {
	id, ok := serviceIDHeader(w, r)
	if !ok {
		return
	}
	var req challengeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	kt := registry.KeyType(*req.KeyType)
	rec, ok := s.reg.Lookup(id)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	owner := registry.Owner{KeyType: kt, KeyBytes: *req.PubKey}
	if !rec.HasOwner(owner) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if kt != registry.KeyTypeEcdsa && kt != registry.KeyTypeSr25519 {
		// Refused before a challenge is issued that could never verify.
		http.Error(w, "key_type "+kt.String()+" is not supported by bpm", http.StatusBadRequest)
		return
	}
	ch, exp, err := s.chals.issue(id, kt, *req.PubKey, s.now(), s.cfg.ChallengeTTL)
	if err != nil {
		s.log.Warn("auth: challenge", "service", id.String(), "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"challenge": hex.EncodeToString(ch[:]), "expires_at": exp.Unix()})
}

type verifyRequest struct {
	PubKey            *hexBytes         `json:"pub_key"`
	KeyType           *keyType          `json:"key_type"`
	Challenge         *hexBytes         `json:"challenge"`
	Signature         *hexBytes         `json:"signature"`
	ExpiresAt         *uint64           `json:"expires_at"`
	AdditionalHeaders map[string]string `json:"additional_headers"`
}

func (v *verifyRequest) check() error {
	switch {
	case v.PubKey == nil:
		return errors.New("missing field `pub_key`")
	case v.KeyType == nil:
		return errors.New("missing field `key_type`")
	case v.Challenge == nil:
		return errors.New("missing field `challenge`")
	case len(*v.Challenge) != 32:
		return errors.New("challenge: expected 32 bytes")
	case v.Signature == nil:
		return errors.New("missing field `signature`")
	case len(*v.Signature) != 64:
		return errors.New("signature: expected 64 bytes")
	case v.ExpiresAt == nil:
		return errors.New("missing field `expires_at`")
	}
	return nil
}

type verifyResponse struct {
	Status string `json:"status"`
	Data   any    `json:"data,omitempty"`
}

func verifyError(w http.ResponseWriter, code int, status, msg string) {
	resp := verifyResponse{Status: status}
	if msg != "" {
		resp.Data = map[string]string{"message": msg}
	}
	writeJSON(w, code, resp)
}

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	id, ok := serviceIDHeader(w, r)
	if !ok {
		return
	}
	var req verifyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	kt := registry.KeyType(*req.KeyType)
	rec, ok := s.reg.Lookup(id)
	if !ok {
		verifyError(w, http.StatusNotFound, "UnexpectedError", "Service not found")
		return
	}
	if !rec.HasOwner(registry.Owner{KeyType: kt, KeyBytes: *req.PubKey}) {
		verifyError(w, http.StatusUnauthorized, "Unauthorized", "")
		return
	}
	if kt != registry.KeyTypeEcdsa && kt != registry.KeyTypeSr25519 {
		verifyError(w, http.StatusBadRequest, "UnexpectedError", "key_type "+kt.String()+" is not supported by bpm")
		return
	}
	// Checked here for the 400; mint normalises (and hashes) them once.
	if _, err := normalizeHeaders(req.AdditionalHeaders); err != nil {
		verifyError(w, http.StatusBadRequest, "UnexpectedError", "Invalid headers: "+err.Error())
		return
	}
	now := s.now()
	if err := s.chals.consume([32]byte(*req.Challenge), id, kt, *req.PubKey, now); err != nil {
		s.log.Info("auth: verify refused", "service", id.String(), "reason", err.Error())
		st := "Unauthorized"
		if errors.Is(err, errChallengeExpired) {
			st = "Expired"
		}
		verifyError(w, http.StatusUnauthorized, st, "")
		return
	}
	if err := verifySignature(kt, *req.PubKey, *req.Challenge, *req.Signature); err != nil {
		s.log.Info("auth: verify refused", "service", id.String(), "reason", "signature")
		verifyError(w, http.StatusUnauthorized, "InvalidSignature", "")
		return
	}
	key, ki, err := s.keys.mint(r.Context(), id, now, MintOptions{
		TTL: s.cfg.APIKeyTTL, Headers: req.AdditionalHeaders, Owner: ownerLabel(kt, *req.PubKey), Prefix: rec.APIKeyPrefix,
	})
	if err != nil {
		s.log.Error("auth: mint api key", "service", id.String(), "err", err)
		verifyError(w, http.StatusInternalServerError, "UnexpectedError", "Internal server error")
		return
	}
	s.log.Info("auth: api key issued", "service", id.String(), "key_id", ki.KeyID)
	writeJSON(w, http.StatusCreated, verifyResponse{Status: "Verified", Data: map[string]any{
		"api_key": key.Reveal(), "expires_at": ki.ExpiresAt.Unix(),
	}})
}

type exchangeRequest struct {
	AdditionalHeaders map[string]string `json:"additional_headers"`
	TTLSeconds        *uint64           `json:"ttl_seconds"`
}

func (*exchangeRequest) check() error { return nil }

func exchangeError(w http.ResponseWriter, code int, e, msg string) {
	writeJSON(w, code, map[string]string{"error": e, "message": msg})
}

func (s *Server) handleExchange(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		exchangeError(w, http.StatusUnauthorized, "missing_authorization_header", "Authorization header is required")
		return
	}
	key, ok := strings.CutPrefix(authz[0], "Bearer ")
	if !ok || len(authz) > 1 {
		exchangeError(w, http.StatusBadRequest, "invalid_authorization_header", "Authorization must be `Bearer <api key>`")
		return
	}
	var req exchangeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	// An object is required; `null` decodes into the zero struct.
	now := s.now()
	ki, err := s.keys.Authenticate(key, now)
	switch {
	case errors.Is(err, ErrKeyFormat):
		exchangeError(w, http.StatusBadRequest, "invalid_api_key_format", "API key format is invalid")
		return
	case errors.Is(err, ErrKeyExpired):
		exchangeError(w, http.StatusUnauthorized, "expired_api_key", "API key has expired")
		return
	case errors.Is(err, ErrKeyDisabled):
		exchangeError(w, http.StatusUnauthorized, "disabled_api_key", "API key is disabled")
		return
	case err != nil:
		exchangeError(w, http.StatusUnauthorized, "invalid_api_key", "API key is invalid")
		return
	}
	extra, err := normalizeHeaders(req.AdditionalHeaders)
	if err != nil {
		exchangeError(w, http.StatusBadRequest, "invalid_headers", err.Error())
		return
	}
	// Key defaults overlaid by the request's. Defaults were normalised when
	// the key was made, so (unlike upstream) nothing is hashed twice.
	var headers map[string]string
	if len(ki.Headers)+len(extra) > 0 {
		headers = make(map[string]string, len(ki.Headers)+len(extra))
		for k, v := range ki.Headers {
			headers[k] = v
		}
		for k, v := range extra {
			headers[k] = v
		}
		if len(headers) > maxExtraHeaders {
			exchangeError(w, http.StatusBadRequest, "invalid_headers", fmt.Sprintf("more than %d headers", maxExtraHeaders))
			return
		}
	}
	ttl := s.cfg.TokenTTL
	if req.TTLSeconds != nil {
		if *req.TTLSeconds == 0 {
			exchangeError(w, http.StatusBadRequest, "invalid_request", "ttl_seconds must be at least 1")
			return
		}
		ttl = time.Duration(min(*req.TTLSeconds, uint64(MaxTokenTTL/time.Second))) * time.Second
	}
	// The token never outlives its key.
	if left := ki.ExpiresAt.Sub(now.Truncate(time.Second)); left < ttl {
		ttl = max(left.Truncate(time.Second), time.Second)
	}
	tok, c, err := issueToken(s.key, ki, headers, now, ttl)
	if err != nil {
		s.log.Error("auth: token", "err", err)
		exchangeError(w, http.StatusInternalServerError, "token_generation_failed", "Failed to generate token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok.Reveal(), "token_type": "Bearer",
		"expires_at": c.ExpiresAt, "expires_in": c.ExpiresAt - c.IssuedAt,
	})
}

// handleOAuth answers as upstream does for a service with no OAuth policy
// (and no endpoint sets one): bpm does not implement RFC 7523 assertions.
func (s *Server) handleOAuth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if len(r.Header.Values("X-Service-Id")) == 0 {
		writeJSON(w, http.StatusPreconditionRequired, map[string]string{"error": "invalid_request", "error_description": "Missing X-Service-Id header"})
		return
	}
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "OAuth not enabled for this service"})
}
