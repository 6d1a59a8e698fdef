package authclient

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ChainSafe/go-schnorrkel"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/bpm-project/bpm/internal/registry"
)

// Signer proves ownership of a service owner key by signing a challenge.
// A hardware or remote signer can implement it; the keys in this package
// are the in-process ones.
type Signer interface {
	// KeyType is the owner's key type (registry.KeyTypeEcdsa or
	// registry.KeyTypeSr25519).
	KeyType() registry.KeyType
	// PublicKey returns the exact bytes registered as the owner's
	// key_bytes and sent as pub_key: ownership is byte equality, so an
	// ECDSA key is always the 33-byte compressed SEC1 form.
	PublicKey() []byte
	// Sign signs the 32 raw challenge bytes and returns the 64-byte
	// signature the proxy expects.
	Sign(challenge []byte) ([]byte, error)
}

// PrivateKey is a Signer whose secret lives in this process and can be
// written to a key file.
type PrivateKey interface {
	Signer
	// seed is unexported so only this package (WriteKeyFile) can read the
	// secret back out.
	seed() []byte
}

// sr25519Context is the schnorrkel signing context Substrate signers use,
// and the one the proxy verifies under.
var sr25519Context = []byte("substrate")

// ParseKeyType reads a key type as users write it ("ecdsa", "sr25519") or
// as the proxy spells it ("Ecdsa", "Sr25519"), in any case.
func ParseKeyType(s string) (registry.KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ecdsa", "secp256k1":
		return registry.KeyTypeEcdsa, nil
	case "sr25519":
		return registry.KeyTypeSr25519, nil
	}
	return registry.KeyTypeUnknown, fmt.Errorf("authclient: unknown key type %q (want ecdsa or sr25519)", s)
}

// KeyTypeName is the lowercase name used in key files, flags and owner
// strings ("ecdsa:<hex>").
func KeyTypeName(kt registry.KeyType) string {
	switch kt {
	case registry.KeyTypeEcdsa:
		return "ecdsa"
	case registry.KeyTypeSr25519:
		return "sr25519"
	}
	return strings.ToLower(kt.String())
}

// GenerateKey makes a new random key of type kt.
func GenerateKey(kt registry.KeyType) (PrivateKey, error) {
	switch kt {
	case registry.KeyTypeEcdsa:
		k, err := secp256k1.GeneratePrivateKey()
		if err != nil {
			return nil, fmt.Errorf("authclient: generate ecdsa key: %w", err)
		}
		return &ECDSAKey{priv: k}, nil
	case registry.KeyTypeSr25519:
		var s [32]byte
		if _, err := rand.Read(s[:]); err != nil {
			return nil, fmt.Errorf("authclient: generate sr25519 key: %w", err)
		}
		return NewSR25519Key(s[:])
	}
	return nil, fmt.Errorf("authclient: cannot generate a %s key", kt)
}

// NewPrivateKey builds a key of type kt from its 32-byte secret seed.
func NewPrivateKey(kt registry.KeyType, seed []byte) (PrivateKey, error) {
	switch kt {
	case registry.KeyTypeEcdsa:
		return NewECDSAKey(seed)
	case registry.KeyTypeSr25519:
		return NewSR25519Key(seed)
	}
	return nil, fmt.Errorf("authclient: unsupported key type %s", kt)
}

// ECDSAKey is a secp256k1 private key. It prints redacted.
type ECDSAKey struct{ priv *secp256k1.PrivateKey }

var _ PrivateKey = (*ECDSAKey)(nil)

// NewECDSAKey takes a 32-byte big-endian secret scalar (Substrate's ECDSA
// "secret seed" is exactly this). Zero and values ≥ the group order are
// refused rather than silently reduced into some other key.
func NewECDSAKey(secret []byte) (*ECDSAKey, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("authclient: ecdsa key: %d bytes, want 32", len(secret))
	}
	var s secp256k1.ModNScalar
	if overflow := s.SetByteSlice(secret); overflow || s.IsZero() {
		return nil, errors.New("authclient: ecdsa key: not a valid secp256k1 secret (zero or ≥ the group order)")
	}
	return &ECDSAKey{priv: secp256k1.NewPrivateKey(&s)}, nil
}

// KeyType implements Signer.
func (*ECDSAKey) KeyType() registry.KeyType { return registry.KeyTypeEcdsa }

// PublicKey implements Signer: 33-byte compressed SEC1, the form upstream's
// fixtures register and send.
func (k *ECDSAKey) PublicKey() []byte { return k.priv.PubKey().SerializeCompressed() }

// Sign implements Signer. The 32 challenge bytes are the digest — no
// hashing, no Ethereum prefix — signed with an RFC 6979 nonce, so the same
// key and challenge always give the same signature (the wire sheet's vector
// is reproduced exactly). The result is r‖s with low S: the proxy refuses
// the malleable high-S twin.
func (k *ECDSAKey) Sign(challenge []byte) ([]byte, error) {
	if len(challenge) != 32 {
		return nil, fmt.Errorf("authclient: ecdsa sign: challenge is %d bytes, want 32", len(challenge))
	}
	sig := ecdsa.Sign(k.priv, challenge)
	r, s := sig.R(), sig.S()
	if s.IsOverHalfOrder() {
		// The library already emits low S; this keeps the rule here, where
		// the proxy's refusal would otherwise be hard to trace.
		s.Negate()
	}
	out := make([]byte, 64)
	r.PutBytesUnchecked(out[:32])
	s.PutBytesUnchecked(out[32:])
	return out, nil
}

func (k *ECDSAKey) seed() []byte { return k.priv.Serialize() }

// String implements fmt.Stringer, redacted.
func (*ECDSAKey) String() string { return redacted }

// Format implements fmt.Formatter, redacted for every verb.
func (*ECDSAKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (*ECDSAKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// SR25519Key is a schnorrkel (sr25519) key. It prints redacted.
type SR25519Key struct {
	mini   [32]byte
	secret *schnorrkel.SecretKey
	pub    [32]byte
}

var _ PrivateKey = (*SR25519Key)(nil)

// NewSR25519Key takes a 32-byte mini secret key — Substrate's sr25519
// "secret seed" — and expands it the way Substrate does (Ed25519-style), so
// a seed from `subkey` yields the same public key here.
func NewSR25519Key(mini []byte) (*SR25519Key, error) {
	if len(mini) != 32 {
		return nil, fmt.Errorf("authclient: sr25519 key: %d bytes, want 32", len(mini))
	}
	m, err := schnorrkel.NewMiniSecretKeyFromRaw([32]byte(mini))
	if err != nil {
		return nil, fmt.Errorf("authclient: sr25519 key: %w", err)
	}
	sk := m.ExpandEd25519()
	pk, err := sk.Public()
	if err != nil {
		return nil, fmt.Errorf("authclient: sr25519 key: %w", err)
	}
	return &SR25519Key{mini: [32]byte(mini), secret: sk, pub: pk.Encode()}, nil
}

// KeyType implements Signer.
func (*SR25519Key) KeyType() registry.KeyType { return registry.KeyTypeSr25519 }

// PublicKey implements Signer: the 32-byte ristretto point.
func (k *SR25519Key) PublicKey() []byte { return append([]byte(nil), k.pub[:]...) }

// Sign implements Signer: a simple schnorrkel signature under the
// "substrate" context over the raw challenge bytes. Schnorrkel signatures
// are randomised, so two signatures of one challenge differ.
func (k *SR25519Key) Sign(challenge []byte) ([]byte, error) {
	sig, err := k.secret.Sign(schnorrkel.NewSigningContext(sr25519Context, challenge))
	if err != nil {
		return nil, fmt.Errorf("authclient: sr25519 sign: %w", err)
	}
	b := sig.Encode()
	return b[:], nil
}

func (k *SR25519Key) seed() []byte { return append([]byte(nil), k.mini[:]...) }

// String implements fmt.Stringer, redacted.
func (*SR25519Key) String() string { return redacted }

// Format implements fmt.Formatter, redacted for every verb.
func (*SR25519Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer, redacted.
func (*SR25519Key) LogValue() slog.Value { return slog.StringValue(redacted) }
