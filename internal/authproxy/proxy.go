package authproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/bpm-project/bpm/internal/registry"
)

// route is the cached way to one service's upstream: its target and two
// reverse proxies, HTTP/1.1 for everything and h2c (or h2 over TLS) for gRPC.
type route struct {
	rec        *registry.Record
	target     *url.URL
	h1, h2     *httputil.ReverseProxy
	transports []*http.Transport
}

func (r *route) close() {
	for _, t := range r.transports {
		t.CloseIdleConnections()
	}
}

func (s *Server) dropRoute(id registry.ID) {
	s.routesMu.Lock()
	r := s.routes[id]
	delete(s.routes, id)
	s.routesMu.Unlock()
	if r != nil {
		r.close()
	}
}

var errRouteNotFound = errors.New("service not registered")

// route returns the cached route for id, building it on first use.
func (s *Server) route(id registry.ID) (*route, error) {
	s.routesMu.RLock()
	rt := s.routes[id]
	s.routesMu.RUnlock()
	if rt != nil {
		return rt, nil
	}
	rec, ok := s.reg.Lookup(id)
	if !ok {
		return nil, errRouteNotFound
	}
	rt, err := s.buildRoute(rec)
	if err != nil {
		return nil, err
	}
	s.routesMu.Lock()
	// Cache only if the record did not change meanwhile: its change event
	// may already have fired, and a stale route must not outlive it.
	if cur, ok := s.reg.Lookup(id); ok && cur == rec {
		if old := s.routes[id]; old != nil {
			s.routesMu.Unlock()
			rt.close()
			return old, nil
		}
		s.routes[id] = rt
	}
	s.routesMu.Unlock()
	return rt, nil
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// loopbackOnly is a dial Control that refuses any non-loopback address, so a
// tcp-local record can never make the proxy reach another host, whatever
// its URL or DNS says.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("upstream %s is not a loopback address", address)
	}
	return nil
}

func (s *Server) buildRoute(rec *registry.Record) (*route, error) {
	raw := rec.UpstreamURL
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("authproxy: service %s: upstream url: %w", rec.ID(), err)
	}
	target := &url.URL{Scheme: u.Scheme, Host: u.Host}
	var dial dialFunc
	switch rec.Transport {
	case registry.TransportUnix:
		if u.Scheme != "unix" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("authproxy: service %s: unix upstream must be unix:///absolute/path", rec.ID())
		}
		path := u.Path
		target = &url.URL{Scheme: "http", Host: "localhost"}
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	case registry.TransportTunnel:
		if s.cfg.Dialers == nil {
			return nil, fmt.Errorf("authproxy: service %s: no tunnel dialers configured", rec.ID())
		}
		gw := rec.Gateway
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			d, err := s.cfg.Dialers.DialerFor(gw)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, addr)
		}
	default: // tcp-local
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
		dial = d.DialContext
	}
	if target.Scheme != "http" && target.Scheme != "https" {
		return nil, fmt.Errorf("authproxy: service %s: upstream scheme %q not supported", rec.ID(), target.Scheme)
	}
	if target.Host == "" || strings.HasPrefix(target.Host, ":") {
		target.Host = "localhost" + target.Host
	}
	var tlsConf *tls.Config
	if target.Scheme == "https" {
		if tlsConf, err = s.upstreamTLS(rec); err != nil {
			return nil, fmt.Errorf("authproxy: service %s: %w", rec.ID(), err)
		}
	}
	rt := &route{rec: rec, target: target}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	if target.Scheme == "https" {
		p2.SetHTTP2(true)
	} else {
		p2.SetUnencryptedHTTP2(true)
	}
	for i, p := range []*http.Protocols{&p1, &p2} {
		t := &http.Transport{
			DialContext:           dial,
			TLSClientConfig:       tlsConf,
			Protocols:             p,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 0, // streaming responses may take their time
			DisableCompression:    true,
			ExpectContinueTimeout: time.Second,
		}
		rt.transports = append(rt.transports, t)
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { rewrite(pr, target) },
			Transport: t,
			// 0: responses of known length are buffered; streams (no length:
			// gRPC, chunked, SSE) are flushed at once by ReverseProxy itself.
			FlushInterval:  0,
			BufferPool:     bufPool{},
			ErrorHandler:   s.upstreamError,
			ModifyResponse: setResponseRequestID,
			ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		if i == 0 {
			rt.h1 = rp
		} else {
			rt.h2 = rp
		}
	}
	return rt, nil
}

// openEnvelope opens a TLS profile blob: 12-byte nonce, then
// ChaCha20-Poly1305 ciphertext and tag.
func openEnvelope(key, blob []byte) ([]byte, error) {
	if len(key) != 32 {
		return nil, errors.New("no TLS envelope key configured")
	}
	if len(blob) < 12+16 {
		return nil, errors.New("TLS envelope too short")
	}
	a, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	return a.Open(nil, blob[:12], blob[12:], nil)
}

func (s *Server) upstreamTLS(rec *registry.Record) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	p := rec.TLSProfile
	if p == nil {
		return c, nil
	}
	if p.SNI != nil {
		c.ServerName = *p.SNI
	}
	if len(p.EncryptedUpstreamCABundle) > 0 {
		pem, err := openEnvelope(s.cfg.TLSEnvelopeKey, p.EncryptedUpstreamCABundle)
		if err != nil {
			return nil, fmt.Errorf("upstream CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("upstream CA bundle: no certificates")
		}
		c.RootCAs = pool
	}
	if len(p.EncryptedUpstreamClientCert) > 0 || len(p.EncryptedUpstreamClientKey) > 0 {
		certPEM, err := openEnvelope(s.cfg.TLSEnvelopeKey, p.EncryptedUpstreamClientCert)
		if err != nil {
			return nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		keyPEM, err := openEnvelope(s.cfg.TLSEnvelopeKey, p.EncryptedUpstreamClientKey)
		if err != nil {
			return nil, fmt.Errorf("upstream client key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// rewrite builds the upstream request: the client's path and query on the
// upstream's scheme and authority, client identity headers stripped, the
// token's canonical ones injected.
func rewrite(pr *httputil.ProxyRequest, target *url.URL) {
	info, _ := pr.In.Context().Value(ctxKey{}).(*reqInfo)
	pr.Out.URL.Scheme = target.Scheme
	pr.Out.URL.Host = target.Host
	pr.Out.Host = target.Host
	h := pr.Out.Header
	stripIdentity(h)
	if info == nil {
		return
	}
	for k, v := range info.headers {
		// Checked at issuance; checked again because a token outlives code
		// changes and a forbidden name must never reach an upstream.
		if forbiddenExtra[k] || checkHeaderName(k) != nil {
			continue
		}
		if strings.HasSuffix(k, "-bin") && checkBinaryValue(v) != nil {
			continue
		}
		h.Set(k, v)
	}
	if info.scopes != "" {
		h.Set("X-Scopes", info.scopes)
	}
	h.Set("X-Request-Id", info.requestID)
}

func setResponseRequestID(resp *http.Response) error {
	if info, ok := resp.Request.Context().Value(ctxKey{}).(*reqInfo); ok {
		resp.Header.Set("X-Request-Id", info.requestID)
	}
	return nil
}

func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if info, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		w.Header().Set("X-Request-Id", info.requestID)
	}
	if !errors.Is(err, context.Canceled) {
		s.log.Debug("auth proxy: upstream", "path", r.URL.Path, "err", err)
	}
	w.WriteHeader(http.StatusBadGateway)
}

type bufPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufPool) Put(b []byte) { buffers.Put(&b) }

// refuse answers an unauthenticated or unroutable request: status only.
func refuse(w http.ResponseWriter, rid string, code int) {
	w.Header().Set("X-Request-Id", rid)
	w.WriteHeader(code)
}

func isGRPC(r *http.Request) bool {
	if r.ProtoMajor != 2 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return false
	}
	for _, v := range r.Header.Values("Te") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "trailers") {
				return true
			}
		}
	}
	return false
}

// proxy authenticates a request and forwards it to its service.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, rid string) {
	authz := r.Header.Values("Authorization")
	if len(authz) != 1 {
		refuse(w, rid, http.StatusUnauthorized)
		return
	}
	cred, ok := strings.CutPrefix(authz[0], "Bearer ")
	if !ok || cred == "" {
		refuse(w, rid, http.StatusUnauthorized)
		return
	}
	now := s.now()
	info := &reqInfo{requestID: rid}
	var id registry.ID
	switch {
	case strings.HasPrefix(cred, pasetoLocalHeader):
		c := s.tokens.get(cred, now)
		if c == nil {
			var end time.Time
			var err error
			if c, end, err = parseTokenEnd(s.key, cred, now); err != nil {
				refuse(w, rid, http.StatusUnauthorized)
				return
			}
			s.tokens.put(cred, c, end)
		}
		id = c.Service()
		// bpm: a token dies with its key (revoked, expired or deleted).
		if !s.keys.active(c.KeyID, id, now) {
			refuse(w, rid, http.StatusUnauthorized)
			return
		}
		info.headers = c.AdditionalHeaders
		info.scopes = scopesHeader(c.Scopes)
	case strings.Contains(cred, "|"):
		// Legacy id|token: nothing issues these any more; bpm refuses them.
		refuse(w, rid, http.StatusUnauthorized)
		return
	case strings.Contains(cred, "."):
		if !s.cfg.AllowRawAPIKeys {
			refuse(w, rid, http.StatusUnauthorized)
			return
		}
		ki, err := s.keys.Authenticate(cred, now)
		if err != nil {
			refuse(w, rid, http.StatusUnauthorized)
			return
		}
		id = ki.ServiceID
		info.headers = ki.Headers
	default:
		refuse(w, rid, http.StatusUnauthorized)
		return
	}
	rt, err := s.route(id)
	if errors.Is(err, errRouteNotFound) {
		refuse(w, rid, http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Warn("auth proxy: route", "service", id.String(), "err", err)
		refuse(w, rid, http.StatusInternalServerError)
		return
	}
	if p := rt.rec.TLSProfile; p != nil && p.TLSEnabled && p.RequireClientMTLS {
		// The service demands a client certificate, and bpm's proxy does not
		// terminate client TLS: no request can satisfy it.
		refuse(w, rid, http.StatusUnauthorized)
		return
	}
	rp := rt.h1
	if isGRPC(r) {
		rp = rt.h2
	}
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
}
