package authproxy

import (
	"errors"
	"fmt"

	"github.com/ChainSafe/go-schnorrkel"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/bpm-project/bpm/internal/registry"
)

var (
	errBadSignature = errors.New("invalid signature")
	// ErrUnsupportedKeyType is returned for BN254 BLS owners: bpm does not
	// implement BN254 verification and refuses such keys cleanly rather than
	// parse curve points it cannot check.
	ErrUnsupportedKeyType = errors.New("key type not supported by bpm")
)

// sr25519Context is the schnorrkel signing context Substrate signers use.
var sr25519Context = []byte("substrate")

// verifySignature checks sig over the raw 32-byte challenge with the rules
// of the wire sheet (§2.3). It never panics on malformed input.
func verifySignature(kt registry.KeyType, pub, challenge, sig []byte) error {
	switch kt {
	case registry.KeyTypeEcdsa:
		return verifySecp256k1(pub, challenge, sig)
	case registry.KeyTypeSr25519:
		return verifySr25519(pub, challenge, sig)
	case registry.KeyTypeBn254Bls:
		return ErrUnsupportedKeyType
	}
	return fmt.Errorf("%w: key type %s", ErrUnsupportedKeyType, kt)
}

// verifySecp256k1: SEC1 key (33-byte compressed or 65-byte uncompressed),
// signature r‖s big-endian, the 32 challenge bytes used directly as the
// digest (no hashing, no Ethereum prefix), and only low-S accepted.
func verifySecp256k1(pub, digest, sig []byte) error {
	switch {
	case len(pub) == 33 && (pub[0] == 2 || pub[0] == 3):
	case len(pub) == 65 && pub[0] == 4:
	default:
		// Also refuses the 0x06/0x07 "hybrid" encodings the parser knows.
		return errBadSignature
	}
	pk, err := secp256k1.ParsePubKey(pub)
	if err != nil {
		return errBadSignature
	}
	if len(sig) != 64 || len(digest) != 32 {
		return errBadSignature
	}
	var r, s secp256k1.ModNScalar
	if overflow := r.SetByteSlice(sig[:32]); overflow || r.IsZero() {
		return errBadSignature
	}
	if overflow := s.SetByteSlice(sig[32:]); overflow || s.IsZero() {
		return errBadSignature
	}
	if s.IsOverHalfOrder() {
		return errBadSignature // high-S: malleable twin of a valid signature
	}
	if !ecdsa.NewSignature(&r, &s).Verify(digest, pk) {
		return errBadSignature
	}
	return nil
}

// verifySr25519: 32-byte ristretto key, 64-byte schnorrkel signature (the
// marker bit must be set), simple signing context "substrate" over the raw
// challenge bytes.
func verifySr25519(pub, msg, sig []byte) error {
	if len(pub) != 32 || len(sig) != 64 {
		return errBadSignature
	}
	pk, err := schnorrkel.NewPublicKey([32]byte(pub))
	if err != nil {
		return errBadSignature
	}
	var s schnorrkel.Signature
	if err := s.Decode([64]byte(sig)); err != nil {
		return errBadSignature
	}
	ok, err := pk.Verify(&s, schnorrkel.NewSigningContext(sr25519Context, msg))
	if err != nil || !ok {
		return errBadSignature
	}
	return nil
}
