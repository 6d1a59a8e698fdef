package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// engine is just enough of the Docker Engine API for the smoke tests; the
// provider tests use the real client.
type engine struct {
	hc   *http.Client
	base string
}

func unixEngine(t *testing.T, host string) *engine {
	t.Helper()
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Fatalf("docker host %q is not unix://", host)
	}
	return &engine{
		base: "http://docker",
		hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			},
		}},
	}
}

func (e *engine) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

const smokeLabel = "bpm-testenv-smoke"

// removeSmokeContainers removes what an earlier, interrupted run left.
func (e *engine) removeSmokeContainers(ctx context.Context, t *testing.T) {
	var list []struct{ ID string }
	filters := url.QueryEscape(`{"label":["` + smokeLabel + `"]}`)
	if err := e.call(ctx, "GET", "/containers/json?all=1&filters="+filters, nil, &list); err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range list {
		_ = e.call(ctx, "DELETE", "/containers/"+c.ID+"?force=1", nil, nil)
	}
}

func TestIntegrationDockerContainerAnswers(t *testing.T) {
	env := Require(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := unixEngine(t, env.Docker.Host)
	e.removeSmokeContainers(ctx, t)
	t.Cleanup(func() { e.removeSmokeContainers(context.Background(), t) })

	var created struct{ ID string }
	err := e.call(ctx, "POST", "/containers/create", map[string]any{
		"Image":  env.Docker.Image,
		"Env":    []string{"MESSAGE=hello from the smoke test"},
		"Labels": map[string]string{smokeLabel: "1"},
		"HostConfig": map[string]any{
			"PortBindings": map[string]any{"8080/tcp": []map[string]string{{"HostIp": "127.0.0.1", "HostPort": ""}}},
		},
	}, &created)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := e.call(ctx, "POST", "/containers/"+created.ID+"/start", nil, nil); err != nil {
		t.Fatalf("start: %v", err)
	}
	var inspect struct {
		NetworkSettings struct {
			Ports map[string][]struct{ HostIP, HostPort string }
		}
	}
	if err := e.call(ctx, "GET", "/containers/"+created.ID+"/json", nil, &inspect); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	b := inspect.NetworkSettings.Ports["8080/tcp"]
	if len(b) == 0 {
		t.Fatalf("no published port: %+v", inspect.NetworkSettings.Ports)
	}
	addr := net.JoinHostPort(b[0].HostIP, b[0].HostPort)

	// The server needs a moment to listen after start; poll, bounded.
	var reply struct{ Service, Message string }
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&reply)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container never answered on %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reply.Service != "httpecho" || reply.Message != "hello from the smoke test" {
		t.Errorf("reply %+v", reply)
	}
}

func tlsClient(t *testing.T, ca, cert, key string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func TestIntegrationDockerTLS(t *testing.T) {
	env := Require(t, "docker")
	hostport, ok := strings.CutPrefix(env.Docker.TLSHost, "tcp://")
	if !ok {
		t.Fatalf("TLS host %q is not tcp://", env.Docker.TLSHost)
	}
	ping := "https://" + hostport + "/_ping"
	d := env.Docker

	t.Run("client cert accepted", func(t *testing.T) {
		resp, err := tlsClient(t, d.TLSCA, d.TLSCert, d.TLSKey).Get(ping)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "OK" {
			t.Fatalf("_ping: %s %q", resp.Status, body)
		}
		if v := resp.Header.Get("Api-Version"); v == "" {
			t.Error("no Api-Version header")
		}
	})
	// A refusal may surface in the handshake or on the first read (TLS 1.3
	// checks the client certificate after the handshake): either way the
	// request must fail, never reach the API.
	for name, c := range map[string]*http.Client{
		"no client cert":        tlsClient(t, d.TLSCA, "", ""),
		"untrusted client cert": tlsClient(t, d.TLSCA, d.UntrustedCert, d.UntrustedKey),
	} {
		t.Run(name+" refused", func(t *testing.T) {
			resp, err := c.Get(ping)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %s, want a TLS refusal", resp.Status)
			}
			t.Logf("refused: %v", err)
		})
	}
	t.Run("plain HTTP refused", func(t *testing.T) {
		resp, err := http.Get("http://" + hostport + "/_ping")
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP reached the API")
		}
	})
}
