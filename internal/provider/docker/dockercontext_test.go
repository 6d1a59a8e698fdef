package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzContextEndpoint: whatever a docker context's meta.json or the CLI's
// config.json holds, resolving it gives an endpoint or an error naming the
// context or the file, never a panic, and never an endpoint that skips
// verification.
func FuzzContextEndpoint(f *testing.F) {
	f.Add([]byte(`{"currentContext":"x"}`), []byte(`{"Name":"x","Endpoints":{"docker":{"Host":"tcp://h:2376"}}}`))
	f.Add([]byte(`{"currentContext":"x"}`), []byte(`{"Endpoints":{"docker":{"Host":"tcp://h:1","SkipTLSVerify":true}}}`))
	f.Add([]byte(`{}`), []byte(`{`))
	f.Add([]byte(`{"currentContext":"x"`), []byte(`null`))
	f.Fuzz(func(t *testing.T, config, meta []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("x"))
		md := filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]))
		if err := os.MkdirAll(md, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(md, "meta.json"), meta, 0o600); err != nil {
			t.Fatal(err)
		}
		e, ok, err := contextEndpoint(func(k string) string {
			if k == "DOCKER_CONFIG" {
				return dir
			}
			return ""
		})
		switch {
		case err != nil:
			if msg := err.Error(); !strings.Contains(msg, "docker context") && !strings.Contains(msg, "docker config") {
				t.Errorf("error %q names neither the context nor the config file", msg)
			}
		case ok && (e.URL == "" || e.Context == ""):
			t.Errorf("resolved an endpoint without a URL or context: %+v", e)
		}
	})
}
