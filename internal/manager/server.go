package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/provider"
)

// maxRequestBody bounds API request bodies; real ones are a few hundred bytes.
const maxRequestBody = 1 << 20

// Listen opens the manager's unix socket with mode 0600 in a 0700 directory:
// the file mode is the API's access control. A stale socket left by a crash
// is removed; a live one means another manager is serving and is an error.
func Listen(ctx context.Context, socket string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, fmt.Errorf("manager: socket dir: %w", err)
	}
	if _, err := os.Lstat(socket); err == nil {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, derr := d.DialContext(dctx, "unix", socket)
		cancel()
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("manager: another manager is serving on %s", socket)
		}
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("manager: remove stale socket: %w", err)
		}
	}
	// Create the socket with no group/other bits from the start, so there
	// is no window in which another user could connect.
	old := umask(0o177)
	l, err := net.Listen("unix", socket)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("manager: listen on %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("manager: chmod socket: %w", err)
	}
	return l, nil
}

// Handler returns the local API's HTTP handler.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	p := "/" + api.Version
	mux.HandleFunc("GET "+p+"/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, m.Info())
	})
	mux.HandleFunc("POST "+p+"/instances", func(w http.ResponseWriter, r *http.Request) {
		req, err := DecodeDeployRequest(r.Header.Get("Content-Type"), r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		inst, err := m.Deploy(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, inst)
	})
	mux.HandleFunc("GET "+p+"/instances", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := api.ListOptions{Remote: q.Get("remote")}
		var err error
		if opts.All, err = queryBool(q.Get("all"), "all"); err == nil {
			opts.RemoteOnly, err = queryBool(q.Get("remote_only"), "remote_only")
		}
		if err != nil {
			writeError(w, err)
			return
		}
		if api.WantsStream(r.Header.Get("Accept")) {
			m.streamList(w, r, opts)
			return
		}
		list, err := m.List(r.Context(), opts)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, api.ListResponse{Instances: list})
	})
	mux.HandleFunc("GET "+p+"/instances/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, err := m.Status(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("DELETE "+p+"/instances/{id}", func(w http.ResponseWriter, r *http.Request) {
		inst, err := m.Terminate(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, inst)
	})
	mux.HandleFunc("GET "+p+"/tunnel/peers", func(w http.ResponseWriter, r *http.Request) {
		st, err := m.TunnelStatus(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+p+"/tunnel/peers/{remote}/config", func(w http.ResponseWriter, r *http.Request) {
		// The reply holds the remote's private key: it goes to the 0600
		// socket's client and nowhere else (no logging of bodies here).
		pc, err := m.TunnelPeerConfig(r.Context(), r.PathValue("remote"))
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, pc)
	})
	m.authKeyRoutes(mux, p)
	m.costRoutes(mux, p) // cost: estimate, report, budgets (cost.go)
	mux.HandleFunc("GET "+p+"/instances/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		follow, err := queryBool(q.Get("follow"), "follow")
		if err != nil {
			writeError(w, err)
			return
		}
		tail := 0
		if s := q.Get("tail"); s != "" {
			tail, err = strconv.Atoi(s)
			if err != nil || tail < 0 {
				writeError(w, api.Invalid("tail: %q is not a non-negative integer", s))
				return
			}
		}
		id := r.PathValue("id")
		// Check existence first so a missing instance gets a JSON error,
		// not a 200 with an empty stream.
		if _, err := m.store.GetInstance(r.Context(), id); err != nil {
			writeError(w, instanceErr(id, err))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
		err = m.Logs(r.Context(), id, provider.LogOptions{Follow: follow, Tail: tail}, fw)
		if err != nil && !fw.wrote {
			writeError(w, err)
		}
	})
	return mux
}

// Serve runs the API on l and the health loop until ctx ends; then it shuts
// the API down within a few seconds. Instances keep running. Call Reconcile
// before Serve so the first request sees reconciled state.
func (m *Manager) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	hctx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go m.healthLoop(hctx)
	// The proxy stops with the API: both end when ctx does, or when
	// either fails.
	pctx, stopProxy := context.WithCancel(ctx)
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- m.serveProxy(pctx) }()
	defer func() { stopProxy(); <-proxyDone }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	m.log.Info("manager serving", "socket", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("manager: serve: %w", err)
	case err := <-proxyDone:
		proxyDone <- err // for the deferred wait
		if err != nil && ctx.Err() == nil {
			srv.Close()
			return fmt.Errorf("manager: %w", err)
		}
		<-ctx.Done()
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}

// DecodeDeployRequest parses a deploy request strictly: JSON content type,
// bounded size, no unknown fields, no trailing data.
func DecodeDeployRequest(contentType string, body io.Reader) (api.DeployRequest, error) {
	var req api.DeployRequest
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return req, api.Invalid("content type must be application/json, got %q", contentType)
	}
	data, err := io.ReadAll(io.LimitReader(body, maxRequestBody+1))
	if err != nil {
		return req, api.Invalid("read body: %v", err)
	}
	if len(data) > maxRequestBody {
		return req, api.Invalid("body larger than %d bytes", maxRequestBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return api.DeployRequest{}, api.Invalid("deploy request: %v", err)
	}
	if dec.More() {
		return api.DeployRequest{}, api.Invalid("deploy request: trailing data after the JSON object")
	}
	if req.PackagePath == "" {
		return api.DeployRequest{}, api.Invalid("deploy request: package_path is required")
	}
	if !filepath.IsAbs(req.PackagePath) {
		return api.DeployRequest{}, api.Invalid("deploy request: package_path %q must be absolute", req.PackagePath)
	}
	return req, nil
}

func queryBool(s, name string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, api.Invalid("%s: %q is not a boolean", name, s)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	ae, code := api.ErrorFrom(err)
	writeJSON(w, code, struct {
		Error *api.Error `json:"error"`
	}{ae})
}

// flushWriter flushes after every write so `logs -f` is live.
type flushWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if n > 0 {
		f.wrote = true
		f.rc.Flush()
	}
	return n, err
}

// streamList writes instances as they are read from state, in the stream
// format package api defines. Encoding overlaps the state scan and the
// client's decoding overlaps both, which keeps `bpm list` over 10,000
// instances well inside its budget. An error after the first instance can
// no longer change the status code, so it travels in the stream's trailer.
func (m *Manager) streamList(w http.ResponseWriter, r *http.Request, opts api.ListOptions) {
	w.Header().Set("Content-Type", api.StreamContentType)
	sw := api.NewStreamWriter(w)
	err := m.EachInstance(r.Context(), opts, sw.Write)
	sw.Close(err)
}
