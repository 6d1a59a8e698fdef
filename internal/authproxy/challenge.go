package authproxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/registry"
)

// Challenge outcomes.
var (
	errChallengeUnknown = errors.New("challenge not issued, or already used")
	errChallengeExpired = errors.New("challenge expired")
	errChallengeOther   = errors.New("challenge issued for another service or key")
	errChallengeFull    = errors.New("too many outstanding challenges")
)

// maxChallenges bounds memory: only owners get challenges, but an owner's
// client in a loop must not grow the table without end.
const maxChallenges = 1 << 16

type pendingChallenge struct {
	id      registry.ID
	kt      registry.KeyType
	pub     []byte
	expires time.Time
}

// challenges is bpm's server-side challenge table. Upstream stores nothing
// and verifies any signature over any submitted challenge; bpm accepts a
// challenge only if it issued it, for that service and key, less than the
// TTL ago, and only once.
type challenges struct {
	mu sync.Mutex
	m  map[[32]byte]pendingChallenge
}

func newChallenges() *challenges { return &challenges{m: map[[32]byte]pendingChallenge{}} }

func (c *challenges) issue(id registry.ID, kt registry.KeyType, pub []byte, now time.Time, ttl time.Duration) ([32]byte, time.Time, error) {
	var ch [32]byte
	if _, err := rand.Read(ch[:]); err != nil {
		return ch, time.Time{}, err
	}
	exp := now.Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxChallenges {
		for k, p := range c.m {
			if !now.Before(p.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxChallenges {
			return ch, time.Time{}, errChallengeFull
		}
	}
	c.m[ch] = pendingChallenge{id: id, kt: kt, pub: bytes.Clone(pub), expires: exp}
	return ch, exp, nil
}

// consume removes the challenge whatever the outcome: a challenge is good
// for one verify attempt, so a wrong signature cannot be retried against it.
func (c *challenges) consume(ch [32]byte, id registry.ID, kt registry.KeyType, pub []byte, now time.Time) error {
	c.mu.Lock()
	p, ok := c.m[ch]
	delete(c.m, ch)
	c.mu.Unlock()
	switch {
	case !ok:
		return errChallengeUnknown
	case !now.Before(p.expires):
		return errChallengeExpired
	case p.id != id || p.kt != kt || !bytes.Equal(p.pub, pub):
		return errChallengeOther
	}
	return nil
}
