package authclient

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ChainSafe/go-schnorrkel"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/bpm-project/bpm/internal/registry"
)

// Substrate's dev key //Alice, whose signatures over 32 zero bytes are the
// wire sheet's test vectors (BLUEPRINT-WIRE.md §2.3).
const (
	aliceECDSASeed = "cb6df9de1efca7a3998a8ead4e02159d5fa99c3e0d4fd6432667390bb4726854"
	aliceECDSAPub  = "020a1091341fe5664bfa1782d5e04779689068c916b04cb365ec3153755684d9a1"
	aliceECDSASig  = "26138be19cfc76e800bdcbba5e3bbc5bd79168cd06ea6afd5be6860d23d5e0340c728508ca0b47b49627b5560fbca6cdd92cbf6ac402d0941bba7e42b9d7a20c"
	aliceSRSeed    = "e5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"
	aliceSRPub     = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWireVectors: Alice's seeds, as `subkey` prints them, give the wire
// sheet's public keys, and the ECDSA signer reproduces its signature byte
// for byte (RFC 6979 is deterministic; upstream's fixture signer is too).
func TestWireVectors(t *testing.T) {
	zero := make([]byte, 32)

	ec, err := ParseKeyFile([]byte("0x"+aliceECDSASeed+"\n"), registry.KeyTypeEcdsa)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ec.PublicKey()); got != aliceECDSAPub {
		t.Fatalf("ecdsa pub %s, want %s", got, aliceECDSAPub)
	}
	sig, err := ec.Sign(zero)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sig); got != aliceECDSASig {
		t.Fatalf("ecdsa sig\n got %s\nwant %s", got, aliceECDSASig)
	}

	sr, err := ParseKeyFile([]byte(aliceSRSeed), registry.KeyTypeSr25519)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sr.PublicKey()); got != aliceSRPub {
		t.Fatalf("sr25519 pub %s, want %s", got, aliceSRPub)
	}
	sig, err = sr.Sign(zero)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 64 || sig[63]&0x80 == 0 {
		t.Fatalf("sr25519 sig %x: want 64 bytes with the schnorrkel marker bit", sig)
	}
	pk, _ := schnorrkel.NewPublicKey([32]byte(sr.PublicKey()))
	var s schnorrkel.Signature
	if err := s.Decode([64]byte(sig)); err != nil {
		t.Fatal(err)
	}
	if ok, err := pk.Verify(&s, schnorrkel.NewSigningContext([]byte("substrate"), zero)); !ok || err != nil {
		t.Fatalf("sr25519 signature does not verify under context substrate: %v", err)
	}
}

// TestECDSALowSRawDigest signs many random challenges: every signature is
// low-S and verifies with the challenge itself as the digest.
func TestECDSALowSRawDigest(t *testing.T) {
	k, err := GenerateKey(registry.KeyTypeEcdsa)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := secp256k1.ParsePubKey(k.PublicKey())
	if err != nil || len(k.PublicKey()) != 33 {
		t.Fatalf("public key: %v", err)
	}
	for i := range 200 {
		ch := bytes.Repeat([]byte{byte(i)}, 32)
		ch[0] ^= 0x5a
		sig, err := k.Sign(ch)
		if err != nil {
			t.Fatal(err)
		}
		var r, s secp256k1.ModNScalar
		r.SetByteSlice(sig[:32])
		s.SetByteSlice(sig[32:])
		if s.IsOverHalfOrder() {
			t.Fatalf("high-S signature for challenge %d", i)
		}
		if !ecdsa.NewSignature(&r, &s).Verify(ch, pub) {
			t.Fatalf("signature %d does not verify over the raw challenge", i)
		}
	}
	if _, err := k.Sign(make([]byte, 31)); err == nil {
		t.Fatal("signed a 31-byte challenge")
	}
}

func TestNewECDSAKeyRange(t *testing.T) {
	n := "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141" // the group order
	for _, bad := range []string{strings.Repeat("00", 32), n, strings.Repeat("ff", 32), "01"} {
		if _, err := NewECDSAKey(unhex(t, bad)); err == nil {
			t.Errorf("accepted secret %s", bad)
		}
	}
}

// TestSecretsNeverPrint formats every secret-bearing type every way a log
// line or an error might.
func TestSecretsNeverPrint(t *testing.T) {
	ec, _ := NewECDSAKey(unhex(t, aliceECDSASeed))
	sr, _ := NewSR25519Key(unhex(t, aliceSRSeed))
	ak, _ := ParseAPIKey("ak_AAAAAAAAAAA.supersecretsupersecretsupersecret1")
	tok := Token{s: "v4.local.supersecrettoken"}
	cred := &Credential{APIKey: ak}
	at := AccessToken{Token: tok}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, v := range []any{ec, sr, ak, tok, *cred, at} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			out := fmt.Sprintf(verb, v)
			for _, secret := range []string{aliceECDSASeed, aliceSRSeed, "supersecret", "cb6df9de", "e5be9a50"} {
				if strings.Contains(strings.ToLower(out), secret) {
					t.Errorf("%s of %T leaks: %s", verb, v, out)
				}
			}
		}
		log.Info("x", "v", v)
	}
	log.Info("x", "ec", ec, "sr", sr, "key", ak, "tok", tok)
	for _, secret := range []string{aliceECDSASeed, aliceSRSeed, "supersecret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log leaks: %s", logs.String())
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	for _, kt := range []registry.KeyType{registry.KeyTypeEcdsa, registry.KeyTypeSr25519} {
		path := filepath.Join(dir, KeyTypeName(kt)+".json")
		k, err := GenerateKeyFile(path, kt)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		got, err := LoadKeyFile(path, registry.KeyTypeUnknown)
		if err != nil {
			t.Fatal(err)
		}
		if got.KeyType() != kt || !bytes.Equal(got.PublicKey(), k.PublicKey()) {
			t.Errorf("%s: loaded a different key", path)
		}
		if _, err := GenerateKeyFile(path, kt); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Errorf("overwrote an existing key file: %v", err)
		}
		other := registry.KeyTypeSr25519
		if kt == other {
			other = registry.KeyTypeEcdsa
		}
		if _, err := LoadKeyFile(path, other); err == nil {
			t.Errorf("%s: a contradicting key type was accepted", path)
		}
		// Readable by group or others: refused, with the fix in the message.
		os.Chmod(path, 0o640)
		if _, err := LoadKeyFile(path, registry.KeyTypeUnknown); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%s: group-readable key accepted: %v", path, err)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	seed := strings.Repeat("11", 32)
	for name, c := range map[string]struct {
		content string
		hint    registry.KeyType
		ok      bool
	}{
		"hex-with-hint":    {seed + "\n", registry.KeyTypeSr25519, true},
		"hex-no-hint":      {seed, registry.KeyTypeUnknown, false},
		"hex-short":        {"1111", registry.KeyTypeEcdsa, false},
		"json-unknown":     {`{"key_type":"ecdsa","secret_key":"` + seed + `","x":1}`, 0, false},
		"json-bad-type":    {`{"key_type":"bn254","secret_key":"` + seed + `"}`, 0, false},
		"json-wire-name":   {`{"key_type":"Sr25519","secret_key":"` + seed + `"}`, 0, true},
		"json-trailing":    {`{"key_type":"ecdsa","secret_key":"` + seed + `"}{}`, 0, false},
		"json-missing-key": {`{"key_type":"ecdsa"}`, 0, false},
	} {
		_, err := LoadKeyFile(write(name, c.content), c.hint)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", name, err, c.ok)
		}
		if err != nil && strings.Contains(err.Error(), seed) {
			t.Errorf("%s: error quotes the secret: %v", name, err)
		}
	}
	if _, err := LoadKeyFile(dir, registry.KeyTypeEcdsa); err == nil {
		t.Error("a directory was read as a key")
	}
}

func TestSecretFileAndAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api-key")
	// An existing, looser file is replaced, not reused with its mode.
	os.WriteFile(path, []byte("old"), 0o644)
	if err := WriteSecretFile(path, "ak_AAAAAAAAAAA.secret"); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	k, err := ReadAPIKeyFile(path, nil)
	if err != nil || k.Reveal() != "ak_AAAAAAAAAAA.secret" {
		t.Fatalf("ReadAPIKeyFile = %v", err)
	}
	k, err = ReadAPIKeyFile("-", strings.NewReader("ak_AAAAAAAAAAA.secret\n"))
	if err != nil || k.Reveal() != "ak_AAAAAAAAAAA.secret" {
		t.Fatalf("ReadAPIKeyFile(-) = %v", err)
	}
	os.Chmod(path, 0o604)
	if _, err := ReadAPIKeyFile(path, nil); err == nil {
		t.Fatal("world-readable api key file accepted")
	}
	for _, bad := range []string{"", "noDot", "v4.local.abc", "ak_x. y", "ak\x1b.x"} {
		if _, err := ParseAPIKey(bad); err == nil {
			t.Errorf("ParseAPIKey(%q) accepted", bad)
		}
	}
}

// FuzzParseKeyFile: no input panics, and an accepted key signs.
func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(`{"key_type":"ecdsa","secret_key":"`+aliceECDSASeed+`"}`), uint8(0))
	f.Add([]byte(aliceSRSeed), uint8(2))
	f.Add([]byte("0x"+aliceECDSASeed), uint8(1))
	f.Add([]byte(`{"key_type":"sr25519","secret_key":null}`), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, hint uint8) {
		k, err := ParseKeyFile(b, registry.KeyType(hint%3))
		if err != nil {
			return
		}
		if _, err := k.Sign(make([]byte, 32)); err != nil {
			t.Fatalf("accepted key cannot sign: %v", err)
		}
	})
}
