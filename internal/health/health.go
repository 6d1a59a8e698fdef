package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
)

// DefaultTimeout bounds a check whose manifest gives no timeout, so a hung
// service can never stall a status call.
const DefaultTimeout = 2 * time.Second

// Spec is one resolved health check.
type Spec struct {
	// Address is host:port to probe.
	Address string `json:"address"`
	// HTTPPath, when set, makes this an HTTP GET of that path; otherwise the
	// check is a bare TCP connect.
	HTTPPath string        `json:"http_path,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
}

// Kind names the check for messages: "http" or "tcp".
func (s Spec) Kind() string {
	if s.HTTPPath != "" {
		return "http"
	}
	return "tcp"
}

// FromManifest resolves the manifest's health check against host (normally
// 127.0.0.1). ok is false when the manifest declares no check.
func FromManifest(m blueprint.Manifest, host string) (spec Spec, ok bool, err error) {
	if m.Health == nil {
		return Spec{}, false, nil
	}
	h := m.Health
	if h.HTTP == "" && !h.TCP {
		return Spec{}, false, errors.New("health: neither http nor tcp is set")
	}
	port, err := checkPort(m.Ports, h.Port)
	if err != nil {
		return Spec{}, false, err
	}
	path := h.HTTP
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return Spec{
		Address:  net.JoinHostPort(host, strconv.Itoa(port)),
		HTTPPath: path,
		Timeout:  h.Timeout.Duration,
	}, true, nil
}

// FirstTCPPort returns the manifest's first tcp port, the one an instance's
// address and a default health check point at; 0 when there is none.
func FirstTCPPort(ports []blueprint.Port) int {
	for _, p := range ports {
		if isTCP(p) {
			return p.Port
		}
	}
	return 0
}

func checkPort(ports []blueprint.Port, name string) (int, error) {
	if name == "" {
		if p := FirstTCPPort(ports); p != 0 {
			return p, nil
		}
		return 0, errors.New("health: manifest has no tcp port to check")
	}
	for _, p := range ports {
		if p.Name == name {
			if !isTCP(p) {
				return 0, fmt.Errorf("health: port %q is %s, not tcp", name, p.Protocol)
			}
			return p.Port, nil
		}
	}
	return 0, fmt.Errorf("health: port %q is not declared in ports", name)
}

func isTCP(p blueprint.Port) bool {
	return p.Protocol == "" || strings.EqualFold(p.Protocol, "tcp")
}

// Check runs the check once. It returns nil when the service is healthy: the
// TCP connect succeeds, or the HTTP GET answers 2xx or 3xx (redirects are not
// followed; a redirect proves the service is serving).
func Check(ctx context.Context, spec Spec) error {
	if spec.Address == "" {
		return errors.New("health: no address")
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if spec.HTTPPath == "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", spec.Address)
		if err != nil {
			return fmt.Errorf("health: tcp %s: %w", spec.Address, err)
		}
		return conn.Close()
	}
	return checkHTTP(ctx, spec)
}

func checkHTTP(ctx context.Context, spec Spec) error {
	url := "http://" + spec.Address + spec.HTTPPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: http %s: %w", url, err)
	}
	client := &http.Client{
		// A fresh transport with no proxy: the check targets a local or
		// tunnelled address and must not be sent through HTTP_PROXY, and no
		// idle connection may outlive the check.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: http %s: %w", url, err)
	}
	defer resp.Body.Close()
	// Drain a little so the server sees a clean close, but never read an
	// unbounded body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("health: http %s: status %d", url, resp.StatusCode)
	}
	return nil
}
