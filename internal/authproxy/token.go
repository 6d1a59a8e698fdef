package authproxy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// Claims is the JSON inside a token's "data" string (wire sheet §2.7).
type Claims struct {
	ServiceID         [2]uint64         `json:"service_id"`
	TenantID          string            `json:"tenant_id,omitempty"`
	TenantBinding     string            `json:"tenant_binding,omitempty"`
	AdditionalHeaders map[string]string `json:"additional_headers,omitempty"`
	ExpiresAt         uint64            `json:"expires_at"`
	IssuedAt          uint64            `json:"issued_at"`
	KeyID             string            `json:"key_id"`
	JTI               string            `json:"jti"`
	Scopes            []string          `json:"scopes,omitempty"`
}

// Service returns the claims' service id.
func (c *Claims) Service() registry.ID { return registry.ID{Main: c.ServiceID[0], Sub: c.ServiceID[1]} }

// tokenPayload is the outer PASETO payload: registered claims as RFC 3339
// strings and the bpm/Blueprint claims as a JSON string.
type tokenPayload struct {
	IAT  string `json:"iat"`
	NBF  string `json:"nbf"`
	EXP  string `json:"exp"`
	Data string `json:"data"`
}

// MaxTokenTTL is the longest a token lives. Upstream's outer exp is always
// issuance + 1 h whatever ttl_seconds asks; bpm caps the claim there too.
const MaxTokenTTL = time.Hour

// DefaultTokenTTL is a token's life when the client does not ask.
const DefaultTokenTTL = 15 * time.Minute

func uuidV4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// issueToken seals claims for ki's service, valid for ttl from now.
func issueToken(key *TokenKey, ki *KeyInfo, headers map[string]string, now time.Time, ttl time.Duration) (Token, *Claims, error) {
	iat := now.UTC().Truncate(time.Second)
	exp := iat.Add(ttl)
	c := &Claims{
		ServiceID:         [2]uint64{ki.ServiceID.Main, ki.ServiceID.Sub},
		AdditionalHeaders: headers,
		ExpiresAt:         uint64(exp.Unix()),
		IssuedAt:          uint64(iat.Unix()),
		KeyID:             ki.KeyID,
		JTI:               uuidV4(),
	}
	data, err := json.Marshal(c)
	if err != nil {
		return Token{}, nil, fmt.Errorf("authproxy: token: %w", err)
	}
	p, err := json.Marshal(tokenPayload{
		IAT: iat.Format(time.RFC3339), NBF: iat.Format(time.RFC3339),
		// bpm: the outer exp is the token's real end, not a blanket hour.
		EXP:  exp.Format(time.RFC3339),
		Data: string(data),
	})
	if err != nil {
		return Token{}, nil, fmt.Errorf("authproxy: token: %w", err)
	}
	s, err := pasetoEncrypt(&key.k, p, nil, nil, nil)
	if err != nil {
		return Token{}, nil, fmt.Errorf("authproxy: token: %w", err)
	}
	return Token{s: s}, c, nil
}

// parseToken opens and checks a token: authentic, within nbf..exp, and
// claims unexpired. It says nothing about why a token failed.
func parseToken(key *TokenKey, tok string, now time.Time) (*Claims, error) {
	c, _, err := parseTokenEnd(key, tok, now)
	return c, err
}

// parseTokenEnd is parseToken that also returns the instant the token stops
// being valid (the earlier of the outer exp and the claims' expires_at).
func parseTokenEnd(key *TokenKey, tok string, now time.Time) (*Claims, time.Time, error) {
	var zero time.Time
	if len(tok) > 8192 {
		return nil, zero, errBadToken
	}
	raw, err := pasetoDecrypt(&key.k, tok, nil, nil)
	if err != nil {
		return nil, zero, errBadToken
	}
	var p tokenPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, zero, errBadToken
	}
	exp, err1 := time.Parse(time.RFC3339, p.EXP)
	nbf, err2 := time.Parse(time.RFC3339, p.NBF)
	if err1 != nil || err2 != nil || !now.Before(exp) || now.Before(nbf) {
		return nil, zero, errBadToken
	}
	var c Claims
	if err := json.Unmarshal([]byte(p.Data), &c); err != nil {
		return nil, zero, errBadToken
	}
	if c.ExpiresAt > 1<<62 || uint64(now.Unix()) >= c.ExpiresAt {
		return nil, zero, errBadToken
	}
	end := time.Unix(int64(c.ExpiresAt), 0)
	if exp.Before(end) {
		end = exp
	}
	return &c, end, nil
}

// scopesHeader is the x-scopes value: lowercased, deduplicated, sorted,
// space-joined.
func scopesHeader(scopes []string) string {
	if len(scopes) == 0 {
		return ""
	}
	s := make([]string, 0, len(scopes))
	for _, x := range scopes {
		if x = strings.ToLower(strings.TrimSpace(x)); x != "" {
			s = append(s, x)
		}
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}
