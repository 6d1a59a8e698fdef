package docker

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func frame(stream byte, s string) []byte {
	h := make([]byte, 8, 8+len(s))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

func TestDemux(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "out\n"))
	in.Write(frame(2, "err\n"))
	in.Write(frame(1, ""))
	var out bytes.Buffer
	if err := demux(&out, &in); err != nil || out.String() != "out\nerr\n" {
		t.Fatalf("demux = %q, %v", out.String(), err)
	}
	for name, in := range map[string][]byte{
		"truncated header":  {1, 0, 0},
		"truncated payload": frame(1, "hello")[:10],
		"tty stream":        []byte("plain text, no header"),
		"engine error":      frame(3, "boom"),
	} {
		if err := demux(&out, bytes.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.41", "1.47", true}, {"1.47", "1.41", false}, {"1.9", "1.10", true}, {"1.41", "1.41", false}, {"2.0", "1.99", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestMapState(t *testing.T) {
	for status, want := range map[string]string{
		"created": "creating", "running": "running", "restarting": "degraded", "paused": "degraded",
		"removing": "terminating", "exited": "failed", "dead": "failed", "weird": "failed",
	} {
		var c containerJSON
		c.State.Status = status
		if got, _ := mapState(c); string(got) != want {
			t.Errorf("%s → %s, want %s", status, got, want)
		}
	}
}

func TestJSONMessagesError(t *testing.T) {
	in := `{"status":"Pulling"}` + "\n" + `{"error":"manifest unknown","errorDetail":{"message":"manifest unknown"}}`
	var progress bytes.Buffer
	if err := jsonMessages(strings.NewReader(in), &progress); err == nil || err.Error() != "manifest unknown" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(progress.String(), "Pulling") {
		t.Errorf("progress %q", progress.String())
	}
}
