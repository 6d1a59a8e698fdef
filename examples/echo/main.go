// Command echo is a minimal blueprint service for trying bpm end to end.
//
// It listens on $PORT (default 8080) on 127.0.0.1, or on the host in
// $ECHO_LISTEN (for example 0.0.0.0 inside a container), answers
// GET /healthz with "ok", and echoes every other request back as JSON with
// the Blueprint SDK environment it was started with. Of its arguments it
// reads only "--listen HOST" (or --listen=HOST), which overrides
// $ECHO_LISTEN, so a container source can say 0.0.0.0 in its args without
// touching the local default; the rest it ignores, since the SDK passes
// "run" and flags to native services.
//
// When BRIDGE_SOCKET_PATH is set (the manager sets it), echo registers with
// the manager's bridge as a Blueprint service does: Ping, then
// RegisterBlueprintServiceProxy for $SERVICE_ID with upstream
// http://127.0.0.1:<port>, API key prefix $ECHO_API_KEY_PREFIX (default
// empty, as the SDK's) and the owners in $ECHO_OWNERS, comma-separated
// "ecdsa:<hex>" or "sr25519:<hex>" public keys (`bpm auth keygen` prints
// one). Without owners the service is registered but nobody can log in to
// it. On SIGTERM it unregisters before it stops. A missing or silent bridge
// costs one log line: echo keeps serving, standalone or under a manager
// that does not serve the bridge.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// shownEnv is the SDK environment echoed back: enough to see which instance
// answered. It is an allowlist so that nothing else from the environment can
// leak, and sensitive names are filtered again as a second line of defence.
func shownEnv() []string {
	return []string{"BLUEPRINT_ID", "SERVICE_ID", "DATA_DIR", "PROTOCOL", "CHAIN"}
}

// sensitive reports names that may hold secrets; such values are never shown.
func sensitive(name string) bool {
	upper := strings.ToUpper(name)
	for _, word := range []string{"KEY", "SECRET", "TOKEN", "PASSWORD"} {
		if strings.Contains(upper, word) {
			return true
		}
	}
	return false
}

type echoResponse struct {
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	RequestID string            `json:"request_id"`
	Env       map[string]string `json:"env"`
}

func newHandler(getenv func(string) string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		resp := echoResponse{
			Method:    r.Method,
			Path:      r.URL.Path,
			RequestID: r.Header.Get("X-Request-Id"),
			Env:       map[string]string{},
		}
		for _, name := range shownEnv() {
			if v := getenv(name); v != "" && !sensitive(name) {
				resp.Env[name] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(resp)
	})
	return mux
}

// listenAddr builds the listen address from the environment. Loopback by
// default: the instance is reached through bpm's proxy, never directly.
func listenAddr(getenv func(string) string) string {
	host := getenv("ECHO_LISTEN")
	if host == "" {
		host = "127.0.0.1"
	}
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return net.JoinHostPort(host, port)
}

// run serves until ctx is cancelled, then drains in-flight requests for up to
// five seconds. ready, if non-nil, receives the bound address.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger, ready chan<- string) error {
	owners, err := parseOwners(getenv("ECHO_OWNERS"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr(getenv))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           newHandler(getenv),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// Registered only once serving, so the proxy never routes to a port
	// that is not answering yet.
	reg := register(ctx, getenv, log, owners, upstreamURL(ln.Addr()))
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-errc:
		reg.unregister(ctx, log)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	reg.unregister(ctx, log)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log); err != nil {
		log.Error("echo failed", "err", err)
		os.Exit(1)
	}
}

// serve exists so the signal handler's stop runs before main exits.
func serve(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	getenv := os.Getenv
	if host, ok := listenArg(os.Args[1:]); ok {
		getenv = func(k string) string {
			if k == "ECHO_LISTEN" {
				return host
			}
			return os.Getenv(k)
		}
	}
	return run(ctx, getenv, log, nil)
}

// listenArg finds --listen HOST or --listen=HOST among args; the last wins.
func listenArg(args []string) (string, bool) {
	host, found := "", false
	for i := 0; i < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i], "--listen="); ok {
			host, found = v, true
		} else if args[i] == "--listen" && i+1 < len(args) {
			host, found = args[i+1], true
			i++
		}
	}
	return host, found
}
