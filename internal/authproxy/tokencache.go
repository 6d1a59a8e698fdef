package authproxy

import (
	"sync"
	"time"
)

// tokenCache remembers tokens that already parsed, so the hot path skips
// the decryption and two JSON decodes on every request of a client that
// reuses its token. Only tokens that authenticated are ever stored, each
// with its end of life; revocation is still checked per request (the key
// store lookup is not cached).
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]cachedToken
}

type cachedToken struct {
	c   *Claims
	end time.Time
}

// maxCachedTokens bounds the cache; when full it is simply emptied, which
// costs one re-parse per live token.
const maxCachedTokens = 8192

func (tc *tokenCache) get(tok string, now time.Time) *Claims {
	tc.mu.RLock()
	e, ok := tc.m[tok]
	tc.mu.RUnlock()
	if !ok || !now.Before(e.end) {
		return nil
	}
	return e.c
}

func (tc *tokenCache) put(tok string, c *Claims, end time.Time) {
	tc.mu.Lock()
	if tc.m == nil || len(tc.m) >= maxCachedTokens {
		tc.m = make(map[string]cachedToken, 64)
	}
	tc.m[tok] = cachedToken{c: c, end: end}
	tc.mu.Unlock()
}
