package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/authclient"
	"github.com/bpm-project/bpm/internal/authproxy"
	"github.com/bpm-project/bpm/internal/registry"
)

// runAuth runs `bpm auth args…` under the real root (persistent flags,
// flag error handling) with stdout going to out.
func runAuth(t *testing.T, out io.Writer, stdin string, args ...string) (stderr string, code int) {
	t.Helper()
	var errb bytes.Buffer
	streams := &IOStreams{In: strings.NewReader(stdin), Out: out, ErrOut: &errb}
	root := NewRootCommand(streams)
	g := &globals{streams: streams}
	auth := newAuthCommand(g)
	usageArgs(auth)
	for _, c := range root.Commands() {
		if c.Name() == "auth" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(auth)
	root.SetArgs(append([]string{"auth"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if err != nil {
		errb.WriteString("bpm: " + err.Error() + "\n")
	}
	return errb.String(), ExitCode(err)
}

// authProxy is a real auth proxy on loopback with service 7 routed to a
// counting upstream and owned by the given public keys.
type authProxy struct {
	url      string
	srv      *authproxy.Server
	upstream atomic.Int64
}

func startAuthProxy(t *testing.T, owners ...authclient.Signer) *authProxy {
	t.Helper()
	p := &authProxy{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.upstream.Add(1)
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(up.Close)
	ctx, cancel := context.WithCancel(context.Background())
	store := registry.NewMemStore()
	reg, err := registry.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := authproxy.OpenKeyStore(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	rec := &registry.Record{ServiceID: 7, APIKeyPrefix: "echo_", UpstreamURL: up.URL}
	for _, o := range owners {
		rec.Owners = append(rec.Owners, registry.Owner{KeyType: o.KeyType(), KeyBytes: o.PublicKey()})
	}
	if err := reg.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	p.srv, err = authproxy.New(authproxy.Config{Registry: reg, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.srv.Close() })
	p.url = "http://" + ln.Addr().String()
	return p
}

func (p *authProxy) keysIssued() int { id := registry.ID{Main: 7}; return len(p.srv.Keys().List(&id)) }

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestAuthKeygenAndPubkey(t *testing.T) {
	dir := t.TempDir()
	for _, kt := range []string{"ecdsa", "sr25519"} {
		file := filepath.Join(dir, kt+".key")
		var out bytes.Buffer
		stderr, code := runAuth(t, &out, "", "keygen", "--key-type", kt, "-o", file)
		if code != 0 {
			t.Fatalf("keygen %s: %d %s", kt, code, stderr)
		}
		if m := mode(t, file); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", file, m)
		}
		pub := strings.TrimSpace(out.String())
		wantLen := map[string]int{"ecdsa": 66, "sr25519": 64}[kt]
		if _, err := hex.DecodeString(pub); err != nil || len(pub) != wantLen {
			t.Errorf("keygen printed %q, want %d hex chars", pub, wantLen)
		}
		// The secret is printed nowhere.
		raw, _ := os.ReadFile(file)
		var kf struct {
			SecretKey string `json:"secret_key"`
		}
		json.Unmarshal(raw, &kf)
		if kf.SecretKey == "" || strings.Contains(out.String()+stderr, kf.SecretKey) {
			t.Errorf("secret key printed or missing")
		}
		if !strings.Contains(stderr, kt+":"+pub) {
			t.Errorf("keygen does not show the owner string: %s", stderr)
		}

		out.Reset()
		if _, code := runAuth(t, &out, "", "pubkey", "--key", file); code != 0 || strings.TrimSpace(out.String()) != pub {
			t.Errorf("pubkey = %d %q, want %s", code, out.String(), pub)
		}
		out.Reset()
		if _, code := runAuth(t, &out, "", "pubkey", "--key", file, "-o", "json"); code != 0 {
			t.Fatalf("pubkey -o json: %d", code)
		}
		var ki keyInfo
		if err := json.Unmarshal(out.Bytes(), &ki); err != nil || ki.PublicKey != pub || ki.KeyType != kt || ki.Owner != kt+":"+pub {
			t.Errorf("pubkey -o json = %s (%v)", out.String(), err)
		}

		// Never overwritten.
		if stderr, code := runAuth(t, io.Discard, "", "keygen", "--key-type", kt, "-o", file); code != ExitError || !strings.Contains(stderr, "refusing to overwrite") {
			t.Errorf("keygen over an existing key: %d %s", code, stderr)
		}
		// A key file others can read is refused.
		os.Chmod(file, 0o644)
		if stderr, code := runAuth(t, io.Discard, "", "pubkey", "--key", file); code != ExitInvalid || !strings.Contains(stderr, "chmod 600") {
			t.Errorf("pubkey of a 0644 key: %d %s", code, stderr)
		}
	}
	var out bytes.Buffer
	if _, code := runAuth(t, &out, "", "keygen", "-o", filepath.Join(dir, "j.key"), "--format", "json"); code != 0 {
		t.Fatal("keygen --format json failed")
	}
	var ki keyInfo
	if err := json.Unmarshal(out.Bytes(), &ki); err != nil || ki.KeyType != "ecdsa" {
		t.Errorf("keygen --format json = %s", out.String())
	}
	if _, code := runAuth(t, io.Discard, "", "pubkey", "--key", filepath.Join(dir, "missing")); code != ExitNotFound {
		t.Errorf("pubkey of a missing file: %d, want %d", code, ExitNotFound)
	}
}

func TestAuthUsageErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	runAuth(t, io.Discard, "", "keygen", "-o", key)
	for _, args := range [][]string{
		{"keygen"},               // no -o
		{"keygen", "-o", "json"}, // -o is the file here
		{"keygen", "-o", "-"},    // never to stdout
		{"keygen", "--key-type", "bn254", "-o", filepath.Join(dir, "x")},
		{"keygen", "--format", "xml", "-o", filepath.Join(dir, "y")},
		{"pubkey"},
		{"pubkey", "--key", key, "-o", "xml"},
		{"pubkey", "--key", key, "extra-arg"},
		{"login", "--key", key}, // no --service-id
		{"login", "--service-id", "seven", "--key", key},
		{"login", "--service-id", "7"}, // no --key
		{"login", "--service-id", "7", "--key", key, "--key-type", "rsa"},
		{"login", "--service-id", "7", "--key", key, "--proxy", "127.0.0.1:8276"},
		{"login", "--service-id", "7", "--key", key, "--save", filepath.Join(dir, "no", "such", "dir", "f")},
		{"login", "--service-id", "7", "--key", key, "--save", "-"},
		{"login", "--service-id", "7", "--key", key, "--bogus"},
		{"token"}, // no --api-key-file
		{"token", "--api-key-file", key, "--ttl", "0"},
		{"token", "--api-key-file", key, "--ttl", "500ms"},
		{"token", "--api-key-file", key, "--ttl", "soon"},
		{"token", "--api-key-file", key, "-o", "xml"},
		{"nope"},
	} {
		if stderr, code := runAuth(t, io.Discard, "", args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	// The generated key file was not touched by the refused keygen.
	if _, err := os.Stat(filepath.Join(dir, "json")); err == nil {
		t.Error("keygen -o json wrote a file named json")
	}
}

// TestAuthLoginAndToken: login and token against a real proxy, with
// stdout a pipe-like buffer (prints), --save (does not print), and the
// token really gets a request through.
func TestAuthLoginAndToken(t *testing.T) {
	dir := t.TempDir()
	ecFile, srFile := filepath.Join(dir, "ec.key"), filepath.Join(dir, "sr.key")
	ec, _ := authclient.GenerateKeyFile(ecFile, registry.KeyTypeEcdsa)
	sr, _ := authclient.GenerateKeyFile(srFile, registry.KeyTypeSr25519)
	p := startAuthProxy(t, ec, sr)

	// Not a terminal: the key goes to stdout, and only the key.
	var out bytes.Buffer
	stderr, code := runAuth(t, &out, "", "login", "--proxy", p.url, "--service-id", "7", "--key", srFile)
	if code != 0 {
		t.Fatalf("login: %d %s", code, stderr)
	}
	printed := strings.TrimSpace(out.String())
	if _, err := authclient.ParseAPIKey(printed); err != nil || !strings.HasPrefix(printed, "echo_") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("login printed %q", out.String())
	}
	if strings.Contains(stderr, printed) {
		t.Errorf("the API key reached stderr: %s", stderr)
	}

	// --save: a 0600 file, nothing secret on stdout even with -o json.
	apiKeyFile := filepath.Join(dir, "api.key")
	os.WriteFile(apiKeyFile, []byte("stale"), 0o644) // replaced, mode included
	out.Reset()
	stderr, code = runAuth(t, &out, "", "login", "--proxy", p.url, "--service-id", "7", "--key", ecFile, "--save", apiKeyFile, "-o", "json")
	if code != 0 {
		t.Fatalf("login --save: %d %s", code, stderr)
	}
	if m := mode(t, apiKeyFile); m != 0o600 {
		t.Errorf("api key file mode %v, want 0600", m)
	}
	saved, _ := os.ReadFile(apiKeyFile)
	key := strings.TrimSpace(string(saved))
	if strings.Contains(out.String(), key) || strings.Contains(stderr, key) {
		t.Errorf("saved key also printed:\n%s\n%s", out.String(), stderr)
	}
	var lr loginResult
	if err := json.Unmarshal(out.Bytes(), &lr); err != nil || lr.SavedTo != apiKeyFile || lr.ServiceID != 7 || lr.APIKey != "" || !strings.HasPrefix(key, lr.KeyID+".") {
		t.Errorf("login -o json = %s (%v)", out.String(), err)
	}

	// token from the file, printed (not a terminal), then used.
	out.Reset()
	stderr, code = runAuth(t, &out, "", "token", "--proxy", p.url, "--api-key-file", apiKeyFile, "--ttl", "2h")
	if code != 0 {
		t.Fatalf("token: %d %s", code, stderr)
	}
	tok := strings.TrimSpace(out.String())
	if !strings.HasPrefix(tok, "v4.local.") {
		t.Fatalf("token printed %q", out.String())
	}
	if !strings.Contains(stderr, "granted 1h0m0s") {
		t.Errorf("no notice that the proxy capped the ttl: %s", stderr)
	}
	req, _ := http.NewRequest(http.MethodGet, p.url+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || p.upstream.Load() != 1 {
		t.Errorf("request with the token: %d, upstream saw %d", resp.StatusCode, p.upstream.Load())
	}

	// token from stdin, saved, -o json without the token.
	tokFile := filepath.Join(dir, "token")
	out.Reset()
	stderr, code = runAuth(t, &out, key+"\n", "token", "--proxy", p.url, "--api-key-file", "-", "--save", tokFile, "-o", "json")
	if code != 0 {
		t.Fatalf("token from stdin: %d %s", code, stderr)
	}
	var tr tokenResult
	if err := json.Unmarshal(out.Bytes(), &tr); err != nil || tr.AccessToken != "" || tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || tr.SavedTo != tokFile {
		t.Errorf("token -o json = %s (%v)", out.String(), err)
	}
	if m := mode(t, tokFile); m != 0o600 {
		t.Errorf("token file mode %v", m)
	}

	// Refusals: a stranger's key (401, exit 1, the reason named), an
	// unregistered service (exit 3), a looser API key file (exit 6).
	stranger := filepath.Join(dir, "stranger.key")
	authclient.GenerateKeyFile(stranger, registry.KeyTypeEcdsa)
	stderr, code = runAuth(t, io.Discard, "", "login", "--proxy", p.url, "--service-id", "7", "--key", stranger)
	if code != ExitError || !strings.Contains(stderr, "401") || !strings.Contains(stderr, "not an owner of service 7") {
		t.Errorf("stranger login: %d %s", code, stderr)
	}
	if _, code = runAuth(t, io.Discard, "", "login", "--proxy", p.url, "--service-id", "8", "--key", ecFile); code != ExitNotFound {
		t.Errorf("login to an unregistered service: %d, want %d", code, ExitNotFound)
	}
	os.Chmod(apiKeyFile, 0o640)
	if stderr, code = runAuth(t, io.Discard, "", "token", "--proxy", p.url, "--api-key-file", apiKeyFile); code != ExitInvalid || strings.Contains(stderr, key) {
		t.Errorf("token with a 0640 key file: %d %s", code, stderr)
	}
	if p.upstream.Load() != 1 {
		t.Errorf("refusals reached the upstream")
	}
}
