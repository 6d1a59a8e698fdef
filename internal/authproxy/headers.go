package authproxy

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/sha3"
)

// Limits on additional_headers (wire sheet §2.7).
const (
	maxExtraHeaders     = 8
	maxHeaderNameLen    = 256
	maxHeaderValueLen   = 512
	maxGRPCBinaryHeader = 16384
)

// forbiddenExtra are names a token may never carry. The first ten are
// upstream's list; the rest are bpm's: names the proxy itself injects or
// strips as identity (a key holder must not be able to claim mTLS, scopes
// or a forwarding chain through additional_headers).
var forbiddenExtra = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-authenticate": true, "proxy-authorization": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "host": true, "content-length": true,
	// bpm additions.
	"authorization": true, "x-scope": true, "x-scopes": true, "x-request-id": true, "x-auth-method": true,
	"x-client-cert-subject": true, "x-client-cert-issuer": true, "x-client-cert-serial": true,
	"forwarded": true, "x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true, "x-real-ip": true,
	"cookie": true,
}

// piiHeaders are always hashed before they go into a key or token.
var piiHeaders = map[string]bool{"x-user-id": true, "x-user-email": true, "x-customer-email": true}

// keccak256 is the original Keccak (not SHA3-256), as upstream.
func keccak256(parts ...[]byte) []byte {
	h := sha3.NewLegacyKeccak256()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// hashUserID is upstream's hash_user_id: lowercase hex of the first 16
// bytes of Keccak-256(v).
func hashUserID(v string) string {
	return hex.EncodeToString(keccak256([]byte(v))[:16])
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// normalizeHeaders validates additional_headers and returns them with
// lowercased names and PII hashed: x-user-id, x-user-email and
// x-customer-email always; x-tenant-id unless it is exactly 32 hex chars
// (then the client chose it and it is kept).
func normalizeHeaders(in map[string]string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for name, v := range in {
		n := strings.ToLower(name)
		if err := checkHeaderName(n); err != nil {
			return nil, err
		}
		if forbiddenExtra[n] {
			return nil, fmt.Errorf("header %q is not allowed", n)
		}
		if len(v) > maxHeaderValueLen {
			return nil, fmt.Errorf("header %q: value longer than %d bytes", n, maxHeaderValueLen)
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
				return nil, fmt.Errorf("header %q: value has a non-printable character", n)
			}
		}
		if strings.HasSuffix(n, "-bin") {
			if err := checkBinaryValue(v); err != nil {
				return nil, fmt.Errorf("header %q: %w", n, err)
			}
		}
		switch {
		case piiHeaders[n]:
			v = hashUserID(v)
		case n == "x-tenant-id" && !isHex32(v):
			v = hashUserID(v)
		}
		out[n] = v
	}
	if len(out) > maxExtraHeaders {
		return nil, fmt.Errorf("more than %d headers", maxExtraHeaders)
	}
	return out, nil
}

func checkHeaderName(n string) error {
	if n == "" || len(n) > maxHeaderNameLen {
		return fmt.Errorf("header name length must be 1..%d", maxHeaderNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("header name %q: only letters, digits, '-' and '_' are allowed", n)
		}
	}
	return nil
}

// checkBinaryValue enforces the gRPC rule for "-bin" metadata: base64
// (padded or not), no CR/LF, at most 16384 bytes.
func checkBinaryValue(v string) error {
	if len(v) > maxGRPCBinaryHeader {
		return errors.New("binary value too long")
	}
	if strings.ContainsAny(v, "\r\n") {
		return errors.New("binary value has CR or LF")
	}
	if _, err := base64.StdEncoding.DecodeString(v); err == nil {
		return nil
	}
	if _, err := base64.RawStdEncoding.DecodeString(v); err == nil {
		return nil
	}
	return errors.New("binary value is not base64")
}

// stripped are removed from every proxied request: upstream's list, plus
// (bpm) every identity header the proxy may inject itself, so that a client
// can never present one — x-user-id, x-user-email and x-customer-email
// (upstream passes client values through), x-auth-method, x-client-cert-*,
// and the credentials and routing hints x-api-key and x-service-id.
// x-tenant-* is removed by prefix. Hop-by-hop headers (connection, upgrade,
// te, …) are handled by the reverse proxy, which keeps a WebSocket upgrade
// working. Cookies pass: they are the service's business.
var stripped = []string{
	"Authorization", "X-Scope", "X-Scopes", "Host", "Content-Length", "Proxy-Authorization",
	"Proxy-Authenticate", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip",
	"Forwarded", "X-Request-Id",
	// bpm additions.
	"X-User-Id", "X-User-Email", "X-Customer-Email", "X-Auth-Method",
	"X-Client-Cert-Subject", "X-Client-Cert-Issuer", "X-Client-Cert-Serial", "X-Api-Key", "X-Service-Id",
}

// stripIdentity removes every client-supplied identity header from h.
func stripIdentity(h http.Header) {
	for _, k := range stripped {
		delete(h, k)
	}
	for k := range h {
		if len(k) >= 9 && strings.EqualFold(k[:9], "x-tenant-") {
			delete(h, k)
		}
	}
}
