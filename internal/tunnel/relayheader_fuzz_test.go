package tunnel

import (
	"bytes"
	"errors"
	"testing"
)

// relaySeeds are request headers the fuzzers start from: valid ones (a
// host:port target, an instance id, the longest target) and the malformed
// shapes a peer could send.
func relaySeeds() [][]byte {
	req := func(t string) []byte {
		var b bytes.Buffer
		if err := WriteRelayRequest(&b, t); err != nil {
			panic(err)
		}
		return b.Bytes()
	}
	return [][]byte{
		req("127.0.0.1:8080"),
		req("[::1]:443"),
		req("svc-1a2b3c"),
		append(req("10.0.0.5:22"), "trailing stream bytes"...),
		req(string(bytes.Repeat([]byte{'x'}, 255))),
		{},
		[]byte("BPMR"),
		[]byte("BPMR\x01"),
		[]byte("BPMR\x01\x00"),
		[]byte("BPMR\x02\x03abc"),
		[]byte("BPMX\x01\x03abc"),
		[]byte("BPMR\x01\x0aabc"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// FuzzReadRelayRequest decodes arbitrary bytes as a relay request header (the
// first bytes the hub's BridgePort and a gateway's ForwardPort read from a
// peer). It must never panic; whatever it refuses is ErrRelayProtocol;
// whatever it accepts re-encodes to exactly the bytes it consumed, leaving
// the rest of the stream unread. The same bytes taken as a target must
// round-trip through WriteRelayRequest whenever the writer accepts them.
func FuzzReadRelayRequest(f *testing.F) {
	for _, s := range relaySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		target, err := ReadRelayRequest(r)
		if err != nil {
			if !errors.Is(err, ErrRelayProtocol) {
				t.Fatalf("refusal %v is not ErrRelayProtocol", err)
			}
		} else {
			if len(target) == 0 || len(target) > 255 {
				t.Fatalf("accepted a target of %d bytes", len(target))
			}
			var b bytes.Buffer
			if err := WriteRelayRequest(&b, target); err != nil {
				t.Fatalf("accepted target %q does not re-encode: %v", target, err)
			}
			consumed := len(data) - r.Len()
			if !bytes.Equal(b.Bytes(), data[:consumed]) {
				t.Fatalf("re-encoded %q, consumed %q", b.Bytes(), data[:consumed])
			}
		}

		// Encode side: any 1..255-byte target goes through unchanged.
		var b bytes.Buffer
		if err := WriteRelayRequest(&b, string(data)); err != nil {
			if len(data) >= 1 && len(data) <= 255 {
				t.Fatalf("writer refused a %d-byte target: %v", len(data), err)
			}
			if !errors.Is(err, ErrRelayProtocol) {
				t.Fatalf("writer refusal %v is not ErrRelayProtocol", err)
			}
			return
		}
		got, err := ReadRelayRequest(&b)
		if err != nil || got != string(data) {
			t.Fatalf("round trip of %q: got %q, %v", data, got, err)
		}
		if b.Len() != 0 {
			t.Fatalf("round trip of %q left %d bytes unread", data, b.Len())
		}
	})
}

// FuzzReadRelayReply decodes arbitrary bytes as the answer to a relay
// request (what DialBridge and Via read back). It must never panic; a
// refusal is one of the three sentinel errors; an accepted answer is
// RelayOK and re-encodes to the bytes it consumed.
func FuzzReadRelayReply(f *testing.F) {
	for _, st := range []RelayStatus{RelayOK, RelayForbidden, RelayDialFailed, RelayBadRequest, 9} {
		for _, msg := range []string{"", "no bridge for this instance through this gateway"} {
			var b bytes.Buffer
			_ = WriteRelayReply(&b, st, msg)
			f.Add(b.Bytes())
		}
	}
	f.Add([]byte{0})
	f.Add([]byte{0, 5, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		err := ReadRelayReply(r)
		if err != nil {
			if !errors.Is(err, ErrRelayProtocol) && !errors.Is(err, ErrRelayForbidden) && !errors.Is(err, ErrRelayDialFailed) {
				t.Fatalf("refusal %v is none of the relay errors", err)
			}
			if len(data) >= 2 && RelayStatus(data[0]) == RelayForbidden && len(data) >= 2+int(data[1]) && !errors.Is(err, ErrRelayForbidden) {
				t.Fatalf("a complete RelayForbidden answer gave %v", err)
			}
			return
		}
		if RelayStatus(data[0]) != RelayOK {
			t.Fatalf("accepted status %d", data[0])
		}
		consumed := len(data) - r.Len()
		var b bytes.Buffer
		if err := WriteRelayReply(&b, RelayOK, string(data[2:consumed])); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), data[:consumed]) {
			t.Fatalf("re-encoded %q, consumed %q", b.Bytes(), data[:consumed])
		}
	})
}
