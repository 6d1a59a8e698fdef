package tunnel_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/tunnel"
)

// A key pair from `wg genkey | tee /dev/stderr | wg pubkey`.
const (
	wgPriv = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	wgPub  = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
)

func TestKeysMatchWG(t *testing.T) {
	k, err := tunnel.ParsePrivateKey(wgPriv)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Public().String(); got != wgPub {
		t.Errorf("public key = %s, want %s (as wg pubkey derives it)", got, wgPub)
	}
	if k.Reveal() != wgPriv {
		t.Error("Reveal does not round-trip")
	}
	p, err := tunnel.ParsePublicKey(wgPub)
	if err != nil || !p.Equal(k.Public()) {
		t.Errorf("ParsePublicKey = %v, %v", p, err)
	}
	g, err := tunnel.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := tunnel.ParsePrivateKey(g.Reveal())
	if !g.Equal(g2) || g.Equal(k) || g.IsZero() {
		t.Error("Equal/IsZero wrong for a generated key")
	}
}

func TestPrivateKeyNeverPrints(t *testing.T) {
	k, _ := tunnel.ParsePrivateKey(wgPriv)
	type holder struct {
		Exported tunnel.PrivateKey
		hidden   tunnel.PrivateKey
	}
	h := holder{k, k}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		outs = append(outs, fmt.Sprintf(verb, k), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	j, _ := json.Marshal(h)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "key", k, "holder", h)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k, "holder", h)
	outs = append(outs, buf.String())
	raw := fmt.Sprintf("%x", []byte(k.Reveal()))
	for _, o := range outs {
		if strings.Contains(o, wgPriv) || strings.Contains(o, wgPriv[:20]) || strings.Contains(o, raw[:16]) {
			t.Errorf("private key leaked: %s", o)
		}
	}
	if got := fmt.Sprint(k); got != "REDACTED" {
		t.Errorf("fmt.Sprint(key) = %q, want REDACTED", got)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty key"},
		{"abc", "want 44 characters of base64"},
		{strings.Repeat("!", 44), "not valid base64"},
	} {
		_, err := tunnel.ParsePublicKey(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePublicKey(%q) = %v, want %q", tc.in, err, tc.want)
		}
		_, err = tunnel.ParsePrivateKey(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePrivateKey(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	// A private key error never echoes the input.
	bad := wgPriv[:43] + "!"
	_, err := tunnel.ParsePrivateKey(bad)
	if err == nil || strings.Contains(err.Error(), wgPriv[:40]) {
		t.Errorf("ParsePrivateKey error = %v (must fail without echoing the key)", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(wgPub)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := tunnel.ParsePublicKey(s)
		if err == nil && k.String() != strings.TrimSpace(s) {
			t.Errorf("round trip %q -> %q", s, k.String())
		}
	})
}
