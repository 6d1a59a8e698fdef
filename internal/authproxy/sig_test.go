package authproxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/ChainSafe/go-schnorrkel"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/bpm-project/bpm/internal/registry"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The wire sheet's vectors: Substrate dev key //Alice, challenge = 32 zero bytes.
const (
	vecEcdsaPub   = "020a1091341fe5664bfa1782d5e04779689068c916b04cb365ec3153755684d9a1"
	vecEcdsaSig   = "26138be19cfc76e800bdcbba5e3bbc5bd79168cd06ea6afd5be6860d23d5e0340c728508ca0b47b49627b5560fbca6cdd92cbf6ac402d0941bba7e42b9d7a20c"
	vecSr25519Pub = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
	vecSr25519Sig = "f05fa2a2074d5295a34aae0d5383792a6cc34304c9cb4f6a0c577df4b374fe7bab051bd7570415578ba2da67e056d8f89b420d2e5b82412dc0f0e02877b9e48c"
)

func TestWireSheetVectors(t *testing.T) {
	zero := make([]byte, 32)
	if err := verifySignature(registry.KeyTypeEcdsa, unhex(t, vecEcdsaPub), zero, unhex(t, vecEcdsaSig)); err != nil {
		t.Fatalf("ECDSA vector: %v", err)
	}
	// The 32 bytes are the digest: hashing them first must not verify.
	sha := unhex(t, "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925") // sha256(32 zero bytes)
	if err := verifySignature(registry.KeyTypeEcdsa, unhex(t, vecEcdsaPub), sha, unhex(t, vecEcdsaSig)); err == nil {
		t.Fatal("ECDSA vector verified over SHA-256(challenge)")
	}
	// The same key uncompressed verifies too.
	pk, _ := secp256k1.ParsePubKey(unhex(t, vecEcdsaPub))
	if err := verifySignature(registry.KeyTypeEcdsa, pk.SerializeUncompressed(), zero, unhex(t, vecEcdsaSig)); err != nil {
		t.Fatalf("ECDSA vector, 65-byte key: %v", err)
	}
	// sr25519: the sheet marks this vector "not independently verified";
	// this test is that independent check (go-schnorrkel, context "substrate").
	if err := verifySignature(registry.KeyTypeSr25519, unhex(t, vecSr25519Pub), zero, unhex(t, vecSr25519Sig)); err != nil {
		t.Fatalf("sr25519 vector: %v", err)
	}
	other := make([]byte, 32)
	other[0] = 1
	if err := verifySignature(registry.KeyTypeSr25519, unhex(t, vecSr25519Pub), other, unhex(t, vecSr25519Sig)); err == nil {
		t.Fatal("sr25519 vector verified over another message")
	}
}

// signEcdsa returns r‖s over the raw digest, low-S (decred normalises).
func signEcdsa(key *secp256k1.PrivateKey, digest []byte) []byte {
	compact := ecdsa.SignCompact(key, digest, true) // v ‖ r ‖ s
	return compact[1:]
}

func TestEcdsaRules(t *testing.T) {
	key, _ := secp256k1.GeneratePrivateKey()
	pub := key.PubKey().SerializeCompressed()
	msg := make([]byte, 32)
	rand.Read(msg)
	sig := signEcdsa(key, msg)
	if err := verifySecp256k1(pub, msg, sig); err != nil {
		t.Fatal(err)
	}
	// High-S twin: s' = n - s verifies mathematically but is refused.
	var s secp256k1.ModNScalar
	s.SetByteSlice(sig[32:])
	s.Negate()
	sb := s.Bytes()
	high := append(append([]byte(nil), sig[:32]...), sb[:]...)
	if err := verifySecp256k1(pub, msg, high); !errors.Is(err, errBadSignature) {
		t.Fatalf("high-S accepted: %v", err)
	}
	// 65-byte r‖s‖v is not accepted on the wire.
	if err := verifySecp256k1(pub, msg, append(sig, 27)); err == nil {
		t.Fatal("65-byte signature accepted")
	}
	for _, bad := range [][]byte{nil, pub[:32], append([]byte{6}, pub[1:]...), make([]byte, 33), make([]byte, 65)} {
		if err := verifySecp256k1(bad, msg, sig); err == nil {
			t.Fatalf("bad key %x accepted", bad)
		}
	}
	zeroR := append(make([]byte, 32), sig[32:]...)
	if err := verifySecp256k1(pub, msg, zeroR); err == nil {
		t.Fatal("r = 0 accepted")
	}
	ff := make([]byte, 64)
	for i := range ff {
		ff[i] = 0xff
	}
	if err := verifySecp256k1(pub, msg, ff); err == nil {
		t.Fatal("r, s ≥ n accepted")
	}
}

func TestSr25519Rules(t *testing.T) {
	sk, pk, err := schnorrkel.GenerateKeypair()
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 32)
	rand.Read(msg)
	sig, _ := sk.Sign(schnorrkel.NewSigningContext([]byte("substrate"), msg))
	sb := sig.Encode()
	pb := pk.Encode()
	if err := verifySr25519(pb[:], msg, sb[:]); err != nil {
		t.Fatal(err)
	}
	noMarker := sb
	noMarker[63] &^= 0x80
	if err := verifySr25519(pb[:], msg, noMarker[:]); err == nil {
		t.Fatal("signature without the schnorrkel marker accepted")
	}
	wrongCtx, _ := sk.Sign(schnorrkel.NewSigningContext([]byte("other"), msg))
	wb := wrongCtx.Encode()
	if err := verifySr25519(pb[:], msg, wb[:]); err == nil {
		t.Fatal("signature under another context accepted")
	}
}

func TestBn254Refused(t *testing.T) {
	// Malformed or not, BN254 input is refused without being parsed.
	for _, b := range [][]byte{nil, make([]byte, 64), {0xff}} {
		if err := verifySignature(registry.KeyTypeBn254Bls, b, make([]byte, 32), b); !errors.Is(err, ErrUnsupportedKeyType) {
			t.Fatalf("bn254: %v", err)
		}
	}
	if err := verifySignature(registry.KeyType(99), nil, nil, nil); !errors.Is(err, ErrUnsupportedKeyType) {
		t.Fatal("unknown key type")
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add(uint8(1), unhex(f, vecEcdsaPub), make([]byte, 32), unhex(f, vecEcdsaSig))
	f.Add(uint8(2), unhex(f, vecSr25519Pub), make([]byte, 32), unhex(f, vecSr25519Sig))
	f.Add(uint8(3), make([]byte, 64), make([]byte, 32), make([]byte, 64))
	f.Fuzz(func(t *testing.T, kt uint8, pub, msg, sig []byte) {
		_ = verifySignature(registry.KeyType(kt%5), pub, msg, sig)
	})
}
