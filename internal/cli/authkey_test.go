package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/bpm-project/bpm/internal/api"
)

// stubKeyKey is the API key the stub manager mints.
const stubKeyKey = "tst_AAAAAAAAAAA.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"

// keyManager is a stand-in for the manager's key endpoints on a real unix
// socket (the manager's side has its own tests with a real manager); it
// counts the requests that reach it.
type keyManager struct {
	socket string
	hits   atomic.Int32
	last   atomic.Value // last create request
}

func newKeyManager(t *testing.T) *keyManager {
	t.Helper()
	dir, err := os.MkdirTemp("", "bpmkey")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	km := &keyManager{socket: filepath.Join(dir, "m.sock")}
	ln, err := net.Listen("unix", km.socket)
	if err != nil {
		t.Fatal(err)
	}
	k := api.AuthKey{KeyID: "tst_AAAAAAAAAAA", ServiceID: 1, CreatedAt: time.Unix(1700000000, 0).UTC(),
		ExpiresAt: time.Unix(1700086400, 0).UTC(), State: "active", Owner: "operator", Label: "ci"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/auth/keys", func(w http.ResponseWriter, r *http.Request) {
		km.hits.Add(1)
		var req api.AuthKeyRequest
		json.NewDecoder(r.Body).Decode(&req)
		km.last.Store(req)
		if req.ServiceID == nil || *req.ServiceID != 1 {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"error": api.Error{Code: api.CodeNotFound, Message: "service id 9: no live instance bpm runs serves it"}})
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.AuthKeyCreated{AuthKey: k, APIKey: stubKeyKey})
	})
	mux.HandleFunc("GET /v1/auth/keys", func(w http.ResponseWriter, r *http.Request) {
		km.hits.Add(1)
		json.NewEncoder(w).Encode(api.AuthKeyList{Keys: []api.AuthKey{k}})
	})
	mux.HandleFunc("DELETE /v1/auth/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		km.hits.Add(1)
		rk := k
		rk.KeyID, rk.State = r.PathValue("id"), "revoked"
		json.NewEncoder(w).Encode(rk)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return km
}

// runKey runs `key ARGS` from the constructor, as `bpm auth key` will be.
func runKey(t *testing.T, socket string, out interface{ Write([]byte) (int, error) }, args ...string) (string, int) {
	t.Helper()
	var errb bytes.Buffer
	g := &globals{socket: socket, streams: &IOStreams{In: strings.NewReader(""), Out: out, ErrOut: &errb}}
	cmd := newAuthKeyCommand(g)
	// What NewRootCommand does for the whole tree.
	usageArgs(cmd)
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		errb.WriteString("bpm: " + err.Error() + "\n")
	}
	return errb.String(), ExitCode(err)
}

func TestAuthKeyCreate(t *testing.T) {
	km := newKeyManager(t)

	// A pipe or file gets the key (and only the key, for $(...)).
	var out bytes.Buffer
	errs, code := runKey(t, km.socket, &out, "create", "--service-id", "1", "--ttl", "24h", "--label", "ci")
	if code != 0 || out.String() != stubKeyKey+"\n" {
		t.Fatalf("create: exit %d, stdout %q, stderr %q", code, out.String(), errs)
	}
	if strings.Contains(errs, stubKeyKey) || !strings.Contains(errs, "tst_AAAAAAAAAAA") {
		t.Fatalf("stderr %q: want the key id, never the key", errs)
	}
	if req := km.last.Load().(api.AuthKeyRequest); req.TTL != "24h0m0s" || req.Label != "ci" {
		t.Fatalf("request = %+v", req)
	}

	// --save: a 0600 file, nothing secret printed.
	file := filepath.Join(t.TempDir(), "api.key")
	out.Reset()
	errs, code = runKey(t, km.socket, &out, "create", "--service-id", "1", "--save", file, "-o", "json")
	if code != 0 || strings.Contains(out.String()+errs, stubKeyKey) {
		t.Fatalf("create --save: exit %d, stdout %q, stderr %q", code, out.String(), errs)
	}
	var res authKeyResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.SavedTo != file || res.KeyID != "tst_AAAAAAAAAAA" {
		t.Fatalf("create --save -o json: %q, %v", out.String(), err)
	}
	b, err := os.ReadFile(file)
	fi, _ := os.Stat(file)
	if err != nil || string(b) != stubKeyKey+"\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved key: %q, %v, mode %v", b, err, fi.Mode())
	}

	// Refusals: usage errors before the manager is asked; not-found from it.
	before := km.hits.Load()
	if _, code := runKey(t, km.socket, &out, "create"); code != ExitUsage {
		t.Fatalf("create without --service-id: exit %d", code)
	}
	if _, code := runKey(t, km.socket, &out, "create", "--service-id", "1", "--ttl", "9000h"); code != ExitUsage {
		t.Fatalf("create --ttl 9000h: exit %d", code)
	}
	if km.hits.Load() != before {
		t.Fatal("a refused create reached the manager")
	}
	if errs, code := runKey(t, km.socket, &out, "create", "--service-id", "9"); code != ExitNotFound || !strings.Contains(errs, "no live instance") {
		t.Fatalf("create for a service bpm does not run: exit %d %q", code, errs)
	}
}

func TestAuthKeyListAndRevoke(t *testing.T) {
	km := newKeyManager(t)
	var out bytes.Buffer
	if errs, code := runKey(t, km.socket, &out, "list"); code != 0 || !strings.Contains(out.String(), "tst_AAAAAAAAAAA") || !strings.Contains(out.String(), "KEY ID") {
		t.Fatalf("list: exit %d %q %q", code, out.String(), errs)
	}
	out.Reset()
	if _, code := runKey(t, km.socket, &out, "list", "-o", "yaml", "--service-id", "1"); code != 0 || !strings.Contains(out.String(), "key_id: tst_AAAAAAAAAAA") {
		t.Fatalf("list -o yaml: exit %d %q", code, out.String())
	}
	out.Reset()
	if _, code := runKey(t, km.socket, &out, "list", "-o", "xml"); code != ExitUsage {
		t.Fatalf("list -o xml: exit %d", code)
	}
	out.Reset()
	if errs, code := runKey(t, km.socket, &out, "revoke", "tst_AAAAAAAAAAA"); code != 0 || out.String() != "revoked tst_AAAAAAAAAAA (service 1)\n" {
		t.Fatalf("revoke: exit %d %q %q", code, out.String(), errs)
	}
	if _, code := runKey(t, km.socket, &out, "revoke"); code != ExitUsage {
		t.Fatalf("revoke without an id: exit %d", code)
	}
}
