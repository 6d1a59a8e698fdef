package manager_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/manager"
)

func TestDecodeDeployRequestInvalid(t *testing.T) {
	cases := []struct {
		name, ctype, body, want string
	}{
		{"no content type", "", `{"package_path":"/p"}`, `invalid input: content type must be application/json, got ""`},
		{"wrong content type", "text/plain", `{"package_path":"/p"}`, `invalid input: content type must be application/json, got "text/plain"`},
		{"empty body", "application/json", ``, `invalid input: deploy request: EOF`},
		{"syntax", "application/json", `{"package_path":`, `invalid input: deploy request: unexpected EOF`},
		{"unknown field", "application/json", `{"package_path":"/p","pkg":"x"}`, `invalid input: deploy request: json: unknown field "pkg"`},
		{"wrong type", "application/json", `{"package_path":"/p","service_id":"7"}`, `invalid input: deploy request: json: cannot unmarshal string into Go struct field DeployRequest.service_id of type uint64`},
		{"negative id", "application/json", `{"package_path":"/p","service_id":-1}`, `invalid input: deploy request: json: cannot unmarshal number -1 into Go struct field DeployRequest.service_id of type uint64`},
		{"trailing data", "application/json", `{"package_path":"/p"} {}`, `invalid input: deploy request: trailing data after the JSON object`},
		{"missing path", "application/json", `{}`, `invalid input: deploy request: package_path is required`},
		{"relative path", "application/json", `{"package_path":"pkgs/echo"}`, `invalid input: deploy request: package_path "pkgs/echo" must be absolute`},
		{"too large", "application/json", `{"package_path":"/` + strings.Repeat("a", 1<<20) + `"}`, `invalid input: body larger than 1048576 bytes`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := manager.DecodeDeployRequest(c.ctype, strings.NewReader(c.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if err.Error() != c.want {
				t.Errorf("error\n got: %s\nwant: %s", err, c.want)
			}
		})
	}
	req, err := manager.DecodeDeployRequest("application/json; charset=utf-8", strings.NewReader(`{"package_path":"/p","remote":"aws","service_id":7}`))
	if err != nil || req.PackagePath != "/p" || req.Remote != "aws" || req.ServiceID == nil || *req.ServiceID != 7 {
		t.Fatalf("valid request: %+v %v", req, err)
	}
}

func FuzzDecodeDeployRequest(f *testing.F) {
	f.Add(`{"package_path":"/p","remote":"aws","service_id":7,"blueprint_id":1}`)
	f.Add(`{"package_path":"rel"}`)
	f.Add(`{} {}`)
	f.Add(`{"service_id":1e99}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := manager.DecodeDeployRequest("application/json", strings.NewReader(body))
		if err != nil {
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if req.PackagePath == "" || req.PackagePath[0] != '/' {
			t.Fatalf("accepted a request without an absolute path: %+v", req)
		}
	})
}

// TestAPIErrors checks the HTTP layer: status codes and JSON error bodies
// for bad requests, over the real socket.
func TestAPIErrors(t *testing.T) {
	f := newFixture(t)
	f.start()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", f.cfg.Manager.Socket)
	}}}
	cases := []struct {
		method, path, ctype, body string
		status                    int
		code                      string
	}{
		{"POST", "/v1/instances", "text/plain", `{}`, 400, "invalid"},
		{"POST", "/v1/instances", "application/json", `{"package_path":"/nonexistent/pkg"}`, 400, "invalid"},
		{"GET", "/v1/instances/bp-nope", "", "", 404, "not_found"},
		{"DELETE", "/v1/instances/bp-nope", "", "", 404, "not_found"},
		{"GET", "/v1/instances/bp-nope/logs", "", "", 404, "not_found"},
		{"GET", "/v1/instances?all=maybe", "", "", 400, "invalid"},
		{"GET", "/v1/instances/bp-nope/logs?tail=-3", "", "", 400, "invalid"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, "http://bpm"+c.path, strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(b), `"code":"`+c.code+`"`) {
				t.Fatalf("%d %s, want %d with code %s", resp.StatusCode, b, c.status, c.code)
			}
		})
	}
	if l, _ := f.client.List(context.Background(), api.ListOptions{All: true}); len(l) != 0 {
		t.Fatalf("bad requests left state behind: %+v", l)
	}
}
