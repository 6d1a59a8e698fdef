package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Docker contexts, read as the docker CLI reads them, so a remote without
// an endpoint reaches the engine `docker` itself would use. The files:
//
//	$DOCKER_CONFIG/config.json                      {"currentContext": NAME}
//	$DOCKER_CONFIG/contexts/meta/<sha256(NAME)>/meta.json
//	                                                {"Name": NAME, "Endpoints": {"docker": {"Host": ..., "SkipTLSVerify": ...}}}
//	$DOCKER_CONFIG/contexts/tls/<sha256(NAME)>/docker/{ca,cert,key}.pem
//
// DOCKER_CONFIG defaults to ~/.docker. DOCKER_CONTEXT names a context over
// config.json's; "default" (or none) means DOCKER_HOST's rules.

// contextEndpoint resolves the current docker context. ok is false when
// there is none (or it is "default"): the caller falls back to the
// default socket.
func contextEndpoint(getenv func(string) string) (e endpoint, ok bool, err error) {
	dir := getenv("DOCKER_CONFIG")
	if dir == "" {
		home, herr := os.UserHomeDir()
		if herr != nil {
			return endpoint{}, false, nil
		}
		dir = filepath.Join(home, ".docker")
	}
	name, from := getenv("DOCKER_CONTEXT"), "DOCKER_CONTEXT"
	if name == "" {
		b, rerr := os.ReadFile(filepath.Join(dir, "config.json"))
		if errors.Is(rerr, fs.ErrNotExist) {
			return endpoint{}, false, nil
		}
		if rerr != nil {
			return endpoint{}, false, fmt.Errorf("docker config: %w", rerr)
		}
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		if jerr := json.Unmarshal(b, &cfg); jerr != nil {
			return endpoint{}, false, fmt.Errorf("docker config %s: %w", filepath.Join(dir, "config.json"), jerr)
		}
		name, from = cfg.CurrentContext, filepath.Join(dir, "config.json")
	}
	if name == "" || name == "default" {
		return endpoint{}, false, nil
	}
	sum := sha256.Sum256([]byte(name))
	id := hex.EncodeToString(sum[:])
	metaFile := filepath.Join(dir, "contexts", "meta", id, "meta.json")
	b, err := os.ReadFile(metaFile)
	if err != nil {
		return endpoint{}, false, fmt.Errorf("docker context %q (from %s): %w", name, from, err)
	}
	var meta struct {
		Name      string
		Endpoints map[string]struct {
			Host          string
			SkipTLSVerify bool
		}
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return endpoint{}, false, fmt.Errorf("docker context %q: %s: %w", name, metaFile, err)
	}
	d, found := meta.Endpoints["docker"]
	if !found || d.Host == "" {
		return endpoint{}, false, fmt.Errorf("docker context %q: %s has no docker endpoint", name, metaFile)
	}
	if d.SkipTLSVerify {
		// bpm never skips verification; say what to do instead.
		return endpoint{}, false, fmt.Errorf("docker context %q skips TLS verification, which bpm never does: give the context a CA (docker context update --docker ca=...) or set the remote's endpoint and ca", name)
	}
	e = endpoint{URL: d.Host, Context: name}
	tls := filepath.Join(dir, "contexts", "tls", id, "docker")
	for _, f := range []struct {
		file string
		dst  *string
	}{{"ca.pem", &e.CA}, {"cert.pem", &e.Cert}, {"key.pem", &e.Key}} {
		p := filepath.Join(tls, f.file)
		if _, err := os.Stat(p); err == nil {
			*f.dst = p
		}
	}
	return e, true, nil
}
