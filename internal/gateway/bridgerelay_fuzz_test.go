package gateway

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// preambleSeeds: valid preambles (short, longest, followed by the gRPC
// stream) and the malformed shapes a client could send.
func preambleSeeds() [][]byte {
	pre := func(id, tok string) []byte {
		var b bytes.Buffer
		if err := WriteRelayPreamble(&b, id, tok); err != nil {
			panic(err)
		}
		return b.Bytes()
	}
	return [][]byte{
		pre("bp-1a2b3c", strings.Repeat("t", 44)),
		pre(strings.Repeat("i", 255), strings.Repeat("t", 255)),
		append(pre("bp-x", "tok"), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"...),
		{},
		[]byte("BPMB"),
		[]byte("BPMB\x01\x00"),
		[]byte("BPMB\x01\x01i"),
		[]byte("BPMB\x01\x01i\x00"),
		[]byte("BPMB\x01\x01i\x05ab"),
		[]byte("BPMB\x02\x01i\x01t"),
		[]byte("BPMR\x01\x01i\x01t"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// TestRelayPreambleRoundTrip: what WriteRelayPreamble sends,
// ReadRelayPreamble returns, and the bytes after it stay unread; the
// writer refuses what the format cannot carry.
func TestRelayPreambleRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRelayPreamble(&b, "bp-7", "secret-token"); err != nil {
		t.Fatal(err)
	}
	b.WriteString("rest")
	id, tok, err := ReadRelayPreamble(&b)
	if err != nil || id != "bp-7" || tok != "secret-token" || b.String() != "rest" {
		t.Fatalf("got %q %q %v, rest %q", id, tok, err, b.String())
	}
	for _, tc := range []struct{ id, tok string }{{"", "t"}, {"i", ""}, {strings.Repeat("i", 256), "t"}, {"i", strings.Repeat("t", 256)}} {
		if err := WriteRelayPreamble(&bytes.Buffer{}, tc.id, tc.tok); err == nil {
			t.Errorf("id of %d and token of %d bytes: accepted", len(tc.id), len(tc.tok))
		}
	}
	// A refusal names what is wrong, never the token's bytes.
	var short bytes.Buffer
	short.WriteString("BPMB\x01\x01i\x10very-secret")
	if _, _, err := ReadRelayPreamble(&short); err == nil || strings.Contains(err.Error(), "very-secret") {
		t.Errorf("truncated token: %v", err)
	}
}

// FuzzReadRelayPreamble decodes arbitrary bytes as a relay preamble (the
// first bytes a gateway's relay port reads from anything on the cluster
// network). It must never panic; whatever it refuses wraps
// errRelayPreamble; whatever it accepts re-encodes to exactly the bytes it
// consumed, leaving the rest of the stream unread.
func FuzzReadRelayPreamble(f *testing.F) {
	for _, s := range preambleSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		id, tok, err := ReadRelayPreamble(r)
		if err != nil {
			if !errors.Is(err, errRelayPreamble) {
				t.Fatalf("refusal %v does not wrap errRelayPreamble", err)
			}
			return
		}
		var b bytes.Buffer
		if err := WriteRelayPreamble(&b, id, tok); err != nil {
			t.Fatalf("accepted (%q, %d-byte token) does not re-encode: %v", id, len(tok), err)
		}
		consumed := len(data) - r.Len()
		if !bytes.Equal(b.Bytes(), data[:consumed]) {
			t.Fatalf("re-encoded %q, consumed %q", b.Bytes(), data[:consumed])
		}
	})
}

// TestRelayProofIsPerConnection: what the sidecar sends is bound to the
// gateway's challenge and the instance id: the same token gives another
// proof for another challenge or id, and a wrong token never matches.
func TestRelayProofIsPerConnection(t *testing.T) {
	d := tokenDigest("the-token")
	n1, n2 := bytes.Repeat([]byte{1}, relayNonceSize), bytes.Repeat([]byte{2}, relayNonceSize)
	p := relayProof(d, n1, "bp-1")
	if p == relayProof(d, n2, "bp-1") || p == relayProof(d, n1, "bp-2") || p == relayProof(tokenDigest("other"), n1, "bp-1") {
		t.Error("a proof matched another challenge, instance or token")
	}
	if strings.Contains(p, "the-token") || p != relayProof(d, n1, "bp-1") {
		t.Errorf("proof %q: want a deterministic HMAC that does not hold the token", p)
	}
}
