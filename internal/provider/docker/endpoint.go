package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bpm-project/bpm/internal/provider"
)

// defaultSocket is where dockerd listens when nothing says otherwise.
const defaultSocket = "unix:///var/run/docker.sock"

// endpoint is a resolved way to reach one engine.
type endpoint struct {
	URL      string // unix:///path, tcp://host:port or https://host:port
	CA       string
	Cert     string
	Key      string
	Insecure bool
	Token    string
	// FromEnv records that DOCKER_* chose it, for error messages.
	FromEnv bool
	// Context is the docker context that chose it, if one did.
	Context string
	// dial is Options.Dial: a caller-provided transport (URL dial://REMOTE).
	dial func(ctx context.Context) (net.Conn, error)
}

// resolveEndpoint applies the rule: the remote's own settings win;
// when it names no endpoint and no TLS files, DOCKER_HOST,
// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are honoured as the docker CLI
// reads them, then the current docker context (DOCKER_CONTEXT or
// config.json's currentContext), then the default socket.
func resolveEndpoint(c *Config, ep string, getenv func(string) string) (endpoint, error) {
	e := endpoint{URL: ep, CA: c.CA, Cert: c.Cert, Key: c.Key, Insecure: c.Insecure, Token: string(c.AuthToken)}
	if ep != "" || c.CA != "" || c.Cert != "" || c.Key != "" {
		if e.URL == "" {
			e.URL = defaultSocket
		}
		return e, nil
	}
	e.URL = getenv("DOCKER_HOST")
	if e.URL == "" {
		ce, ok, err := contextEndpoint(getenv)
		if err != nil {
			return endpoint{}, err
		}
		if ok {
			ce.Token = e.Token
			return ce, nil
		}
		e.URL = defaultSocket
		return e, nil
	}
	e.FromEnv = true
	if v := getenv("DOCKER_TLS_VERIFY"); v != "" && v != "0" {
		dir := getenv("DOCKER_CERT_PATH")
		if dir == "" {
			if home, err := os.UserHomeDir(); err == nil {
				dir = filepath.Join(home, ".docker")
			}
		}
		e.CA = filepath.Join(dir, "ca.pem")
		e.Cert = filepath.Join(dir, "cert.pem")
		e.Key = filepath.Join(dir, "key.pem")
	}
	return e, nil
}

// newClient builds the HTTP client for e. TLS is verified against CA (or
// the system roots); there is no switch to skip verification.
func newClient(e endpoint, warn func(msg string, args ...any)) (*client, error) {
	u, err := url.Parse(e.URL)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", e.URL, err)
	}
	tr := &http.Transport{
		Proxy:                 nil, // an engine is never reached through an HTTP proxy
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // logs -f and image loads wait as long as ctx allows
	}
	c := &client{hc: &http.Client{Transport: tr}, token: e.Token}
	hasTLS := e.CA != "" || e.Cert != "" || e.Key != ""
	switch u.Scheme {
	case "dial":
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return e.dial(ctx) }
		c.base = "http://docker"
	case "unix":
		path := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		c.base = "http://docker"
	case "tcp", "https", "http":
		plain := u.Scheme == "http" || (u.Scheme == "tcp" && !hasTLS)
		if plain {
			if !e.Insecure {
				return nil, fmt.Errorf("endpoint %s has no TLS: set ca, cert and key (or DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH), or insecure = true for a link that is already encrypted", e.URL)
			}
			warn("docker endpoint without TLS: anyone on the path can read and drive the engine", "endpoint", redactURL(e.URL))
			c.base = "http://" + u.Host
			break
		}
		cfg, err := tlsConfig(e)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
		c.base = "https://" + u.Host
	case "ssh":
		return nil, fmt.Errorf("endpoint %s: ssh:// engines: %w (use the ssh provider, or a TLS endpoint)", e.URL, provider.ErrNotAvailableYet)
	default:
		return nil, fmt.Errorf("endpoint %q: unknown scheme %q", e.URL, u.Scheme)
	}
	return c, nil
}

func tlsConfig(e endpoint) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CA != "" {
		pem, err := os.ReadFile(e.CA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no PEM certificate in it", e.CA)
		}
		cfg.RootCAs = pool
	}
	if (e.Cert == "") != (e.Key == "") {
		return nil, errors.New("tls: cert and key must be set together")
	}
	if e.Cert != "" {
		pair, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// explain turns a transport failure into a message an operator can act on;
// TLS alerts are otherwise cryptic ("remote error: tls: bad certificate").
// where names the engine in errors, with the docker context that chose it.
func (e endpoint) where() string {
	if e.Context != "" {
		return redactURL(e.URL) + " (docker context " + e.Context + ")"
	}
	return redactURL(e.URL)
}

func explain(e endpoint, err error) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := err.Error()
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	switch {
	case errors.As(err, &uerr):
		return fmt.Errorf("engine %s: its certificate is not signed by the configured ca (%s): %w", e.where(), e.CA, err)
	case errors.As(err, &herr):
		return fmt.Errorf("engine %s: its certificate does not name this host: %w", e.where(), err)
	// Engines answer a missing client certificate with either alert,
	// depending on the TLS version negotiated.
	case strings.Contains(msg, "certificate required"),
		e.Cert == "" && strings.Contains(msg, "bad certificate"):
		return fmt.Errorf("engine %s refused the connection: it requires a client certificate and none is configured (set cert and key): %w", e.where(), err)
	case strings.Contains(msg, "bad certificate"), strings.Contains(msg, "unknown certificate authority"), strings.Contains(msg, "unknown ca"):
		return fmt.Errorf("engine %s refused bpm's client certificate %s: it is not signed by a CA the engine trusts: %w", e.where(), e.Cert, err)
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("engine %s answers plain HTTP, not TLS: %w", e.where(), err)
	}
	return fmt.Errorf("engine %s: %w: %w", e.where(), provider.ErrUnavailable, err)
}

// redactURL is an endpoint fit for errors and logs: any password (from
// DOCKER_HOST, which bpm does not validate) replaced by xxxxx.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable endpoint)"
	}
	return u.Redacted()
}
