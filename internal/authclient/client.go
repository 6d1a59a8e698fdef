package authclient

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// DefaultProxyURL is where bpm's auth proxy listens unless told otherwise
// (authproxy.DefaultAddr).
const DefaultProxyURL = "http://127.0.0.1:8276"

// maxReply bounds a proxy reply; the real ones are a few hundred bytes.
const maxReply = 1 << 20

// Client talks to an auth proxy. The zero value is ready to use.
type Client struct {
	// HTTPClient, if set, sends the requests. Nil uses a client that does
	// not follow redirects: a redirect would replay a signature or an API
	// key to a URL the user never named.
	HTTPClient *http.Client
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *Client) http() *http.Client {
	if c != nil && c.HTTPClient != nil {
		return c.HTTPClient
	}
	return noRedirects
}

// IssuedChallenge is the proxy's answer to a challenge request.
type IssuedChallenge struct {
	Challenge [32]byte
	// ExpiresAt is when the proxy stops accepting an answer (30 s after
	// issue); Verify sends it back, as the wire format requires.
	ExpiresAt time.Time
}

// Credential is an API key obtained by Verify.
type Credential struct {
	APIKey    APIKey
	ExpiresAt time.Time
}

// AccessToken is a token obtained by Exchange.
type AccessToken struct {
	Token     Token
	TokenType string // "Bearer"
	ExpiresAt time.Time
	ExpiresIn time.Duration
}

// Error is a refusal from the proxy (or a reply this package would not
// accept). It carries what the proxy said, so a caller can tell a key that
// is not an owner from a bad signature or an expired API key.
type Error struct {
	// Op is the step: "challenge", "verify" or "exchange".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the proxy's error code: verify's status ("InvalidSignature",
	// "Unauthorized", "Expired", …) or exchange's error ("invalid_api_key",
	// …); empty when the reply had none (challenge errors have no body).
	Code string
	// Message is the proxy's message, sanitised for a terminal.
	Message string
	// RequestID is the proxy's x-request-id, to find the request in its log.
	RequestID string
	// hint explains the refusal in this step's terms.
	hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "authclient: %s: proxy answered %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.hint != "" {
		b.WriteString("; " + e.hint)
	}
	if e.RequestID != "" {
		b.WriteString(" [request id " + e.RequestID + "]")
	}
	return b.String()
}

// Challenge asks the proxy for a challenge for an owner key of serviceID.
func Challenge(ctx context.Context, proxyURL string, serviceID uint64, pubKey []byte, kt registry.KeyType) (*IssuedChallenge, error) {
	return new(Client).Challenge(ctx, proxyURL, serviceID, pubKey, kt)
}

// Verify signs ch with s and trades the signature for an API key.
func Verify(ctx context.Context, proxyURL string, serviceID uint64, ch *IssuedChallenge, s Signer) (*Credential, error) {
	return new(Client).Verify(ctx, proxyURL, serviceID, ch, s)
}

// Login is Challenge then Verify: the whole proof of ownership.
func Login(ctx context.Context, proxyURL string, serviceID uint64, s Signer) (*Credential, error) {
	return new(Client).Login(ctx, proxyURL, serviceID, s)
}

// Exchange trades an API key for an access token living ttl (0: the
// proxy's default, 15 minutes; the proxy may grant less).
func Exchange(ctx context.Context, proxyURL string, apiKey APIKey, ttl time.Duration) (*AccessToken, error) {
	return new(Client).Exchange(ctx, proxyURL, apiKey, ttl)
}

// Challenge asks the proxy for a challenge for an owner key of serviceID.
func (c *Client) Challenge(ctx context.Context, proxyURL string, serviceID uint64, pubKey []byte, kt registry.KeyType) (*IssuedChallenge, error) {
	body := map[string]string{"pub_key": hex.EncodeToString(pubKey), "key_type": kt.String()}
	resp, raw, err := c.post(ctx, proxyURL, "/v1/auth/challenge", "challenge", serviceID, "", body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		e := replyError("challenge", resp, raw)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			e.hint = fmt.Sprintf("the %s key %s is not an owner of service %d", KeyTypeName(kt), shortHex(pubKey), serviceID)
		case http.StatusNotFound:
			e.hint = fmt.Sprintf("service %d is not registered with the proxy", serviceID)
		}
		return nil, e
	}
	var r struct {
		Challenge *string `json:"challenge"`
		ExpiresAt *uint64 `json:"expires_at"`
	}
	if err := decodeStrict("challenge", resp, raw, &r); err != nil {
		return nil, err
	}
	if r.Challenge == nil || r.ExpiresAt == nil {
		return nil, malformed("challenge", resp, "missing challenge or expires_at")
	}
	ch, err := hex.DecodeString(*r.Challenge)
	if err != nil || len(ch) != 32 {
		return nil, malformed("challenge", resp, "challenge is not 32 bytes of hex")
	}
	if *r.ExpiresAt > 1<<62 {
		return nil, malformed("challenge", resp, "expires_at out of range")
	}
	return &IssuedChallenge{Challenge: [32]byte(ch), ExpiresAt: time.Unix(int64(*r.ExpiresAt), 0)}, nil
}

// Verify signs ch with s and trades the signature for an API key.
func (c *Client) Verify(ctx context.Context, proxyURL string, serviceID uint64, ch *IssuedChallenge, s Signer) (*Credential, error) {
	if ch == nil {
		return nil, errors.New("authclient: verify: no challenge")
	}
	sig, err := s.Sign(ch.Challenge[:])
	if err != nil {
		return nil, err
	}
	if len(sig) == 65 && s.KeyType() == registry.KeyTypeEcdsa {
		sig = sig[:64] // r‖s‖v from an Ethereum-style signer: the proxy wants no v
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("authclient: verify: signer returned %d bytes, want 64", len(sig))
	}
	body := map[string]any{
		"pub_key":    hex.EncodeToString(s.PublicKey()),
		"key_type":   s.KeyType().String(),
		"challenge":  hex.EncodeToString(ch.Challenge[:]),
		"signature":  hex.EncodeToString(sig),
		"expires_at": ch.ExpiresAt.Unix(),
	}
	resp, raw, err := c.post(ctx, proxyURL, "/v1/auth/verify", "verify", serviceID, "", body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		e := replyError("verify", resp, raw)
		switch e.Code {
		case "InvalidSignature":
			e.hint = "the signature was refused (wrong key for this public key?)"
		case "Expired":
			e.hint = "the challenge expired before it was answered; try again"
		case "Unauthorized":
			e.hint = fmt.Sprintf("the key is not an owner of service %d, or the challenge was already used", serviceID)
		}
		return nil, e
	}
	var r struct {
		Status *string `json:"status"`
		Data   *struct {
			APIKey    *string `json:"api_key"`
			ExpiresAt *uint64 `json:"expires_at"`
		} `json:"data"`
	}
	if err := decodeStrict("verify", resp, raw, &r); err != nil {
		return nil, err
	}
	if r.Status == nil || *r.Status != "Verified" || r.Data == nil || r.Data.APIKey == nil || r.Data.ExpiresAt == nil {
		return nil, malformed("verify", resp, "not a Verified reply with api_key and expires_at")
	}
	k, err := ParseAPIKey(*r.Data.APIKey)
	if err != nil {
		return nil, malformed("verify", resp, "api_key is not an API key")
	}
	if *r.Data.ExpiresAt > 1<<62 {
		return nil, malformed("verify", resp, "expires_at out of range")
	}
	return &Credential{APIKey: k, ExpiresAt: time.Unix(int64(*r.Data.ExpiresAt), 0)}, nil
}

// Login is Challenge then Verify: the whole proof of ownership.
func (c *Client) Login(ctx context.Context, proxyURL string, serviceID uint64, s Signer) (*Credential, error) {
	ch, err := c.Challenge(ctx, proxyURL, serviceID, s.PublicKey(), s.KeyType())
	if err != nil {
		return nil, err
	}
	return c.Verify(ctx, proxyURL, serviceID, ch, s)
}

// Exchange trades an API key for an access token living ttl (0: the
// proxy's default; whole seconds; the proxy may grant less).
func (c *Client) Exchange(ctx context.Context, proxyURL string, apiKey APIKey, ttl time.Duration) (*AccessToken, error) {
	if apiKey.IsZero() {
		return nil, errors.New("authclient: exchange: no API key")
	}
	body := map[string]any{}
	if ttl != 0 {
		if ttl < time.Second {
			return nil, fmt.Errorf("authclient: exchange: ttl %v is under a second", ttl)
		}
		body["ttl_seconds"] = uint64(ttl / time.Second)
	}
	resp, raw, err := c.post(ctx, proxyURL, "/v1/auth/exchange", "exchange", 0, "Bearer "+apiKey.Reveal(), body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, replyError("exchange", resp, raw)
	}
	var r struct {
		AccessToken *string `json:"access_token"`
		TokenType   *string `json:"token_type"`
		ExpiresAt   *uint64 `json:"expires_at"`
		ExpiresIn   *uint64 `json:"expires_in"`
	}
	if err := decodeStrict("exchange", resp, raw, &r); err != nil {
		return nil, err
	}
	if r.AccessToken == nil || r.TokenType == nil || r.ExpiresAt == nil || r.ExpiresIn == nil {
		return nil, malformed("exchange", resp, "missing access_token, token_type, expires_at or expires_in")
	}
	if *r.TokenType != "Bearer" || !strings.HasPrefix(*r.AccessToken, "v4.local.") || !printable(*r.AccessToken) {
		return nil, malformed("exchange", resp, "not a Bearer v4.local token")
	}
	if *r.ExpiresAt > 1<<62 || *r.ExpiresIn > 1<<32 {
		return nil, malformed("exchange", resp, "expiry out of range")
	}
	return &AccessToken{
		Token:     Token{s: *r.AccessToken},
		TokenType: *r.TokenType,
		ExpiresAt: time.Unix(int64(*r.ExpiresAt), 0),
		ExpiresIn: time.Duration(*r.ExpiresIn) * time.Second,
	}, nil
}

// Endpoint joins a proxy base URL and an API path, after checking the base
// is a plain http(s) URL: credentials in it, a query or a fragment would
// all be mistakes that end up in someone's log.
func Endpoint(proxyURL, path string) (string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return "", fmt.Errorf("authclient: proxy URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("authclient: proxy URL %q: scheme must be http or https", proxyURL)
	case u.Host == "":
		return "", fmt.Errorf("authclient: proxy URL %q: no host", proxyURL)
	case u.User != nil:
		return "", errors.New("authclient: proxy URL: must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("authclient: proxy URL %q: must not have a query or fragment", proxyURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	return u.String(), nil
}

func (c *Client) post(ctx context.Context, proxyURL, path, op string, serviceID uint64, authz string, body any) (*http.Response, []byte, error) {
	target, err := Endpoint(proxyURL, path)
	if err != nil {
		return nil, nil, err
	}
	j, err := json.Marshal(body)
	if err != nil {
		return nil, nil, fmt.Errorf("authclient: %s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(j))
	if err != nil {
		return nil, nil, fmt.Errorf("authclient: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if op != "exchange" {
		req.Header.Set("X-Service-Id", strconv.FormatUint(serviceID, 10))
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		// The URL is the user's own and carries no secret (Endpoint refuses
		// userinfo); the error is worth showing as is.
		return nil, nil, fmt.Errorf("authclient: %s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return nil, nil, fmt.Errorf("authclient: %s: read reply: %w", op, err)
	}
	if len(raw) > maxReply {
		return nil, nil, fmt.Errorf("authclient: %s: reply larger than %d bytes", op, maxReply)
	}
	return resp, raw, nil
}

// decodeStrict decodes a success reply: JSON content type, no unknown
// fields, nothing after the value.
func decodeStrict(op string, resp *http.Response, raw []byte, v any) error {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return malformed(op, resp, "content type is not application/json")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return malformed(op, resp, "unexpected JSON: "+sanitize(err.Error()))
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		return malformed(op, resp, "trailing data after the JSON reply")
	}
	return nil
}

func malformed(op string, resp *http.Response, why string) *Error {
	return &Error{Op: op, StatusCode: resp.StatusCode, Code: "malformed_reply", Message: why, RequestID: sanitize(resp.Header.Get("X-Request-Id"))}
}

// replyError reads a refusal leniently — whatever the body's shape, the
// status is the news: verify's {"status","data":{"message"}}, exchange's
// {"error","message"}, OAuth's {"error","error_description"}, or plain text.
func replyError(op string, resp *http.Response, raw []byte) *Error {
	e := &Error{Op: op, StatusCode: resp.StatusCode, RequestID: sanitize(resp.Header.Get("X-Request-Id"))}
	var j struct {
		Status  string `json:"status"`
		Error   string `json:"error"`
		Message string `json:"message"`
		Desc    string `json:"error_description"`
		Data    struct {
			Message string `json:"message"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &j) == nil {
		e.Code = sanitize(j.Error + j.Status)
		e.Message = sanitize(cmpOr(j.Message, j.Desc, j.Data.Message))
		return e
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
	e.Message = sanitize(line)
	return e
}

func cmpOr(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sanitize keeps server-supplied text printable and short, so a hostile or
// broken proxy cannot drive the user's terminal through an error message.
func sanitize(s string) string {
	const max = 200
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func shortHex(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 16 {
		return h[:8] + "…" + h[len(h)-8:]
	}
	return h
}
