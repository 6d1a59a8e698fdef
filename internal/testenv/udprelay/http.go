package udprelay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Handler serves the control API (see the package doc). Bind it to
// loopback only: it has no authentication.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.Config())
	})
	mux.HandleFunc("POST /config", func(w http.ResponseWriter, req *http.Request) {
		var c Config
		if err := decodeStrict(req.Body, &c); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := r.SetConfig(c); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, r.Config())
	})
	mux.HandleFunc("POST /partition", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Direction Direction `json:"direction"`
		}
		if err := decodeStrict(req.Body, &body); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if body.Direction == "" {
			body.Direction = Both
		}
		if err := r.Partition(body.Direction); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, r.Config())
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, _ *http.Request) {
		r.Heal()
		writeJSON(w, http.StatusOK, r.Config())
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		r.Reset()
		writeJSON(w, http.StatusOK, r.Config())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.Stats())
	})
	return mux
}

// decodeStrict reads one JSON value, refusing unknown fields (a misspelt
// "dorp" must not silently mean "no loss"). An empty body is the zero value.
func decodeStrict(body io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	if dec.More() {
		return errors.New("decode request: trailing data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Client drives a relay's control API, in-process or the bpm-udprelay
// binary started by scripts/testenv.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client for the control API at baseURL
// ("http://127.0.0.1:PORT").
func NewClient(baseURL string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{Timeout: 10 * time.Second}}
}

// Config returns the relay's current configuration.
func (c *Client) Config(ctx context.Context) (Config, error) {
	var cfg Config
	err := c.do(ctx, http.MethodGet, "/config", nil, &cfg)
	return cfg, err
}

// SetConfig replaces the relay's impairments (and upstream, if set).
func (c *Client) SetConfig(ctx context.Context, cfg Config) error {
	return c.do(ctx, http.MethodPost, "/config", cfg, nil)
}

// Partition cuts the link in direction d.
func (c *Client) Partition(ctx context.Context, d Direction) error {
	return c.do(ctx, http.MethodPost, "/partition", map[string]Direction{"direction": d}, nil)
}

// Heal ends a partition.
func (c *Client) Heal(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/heal", nil, nil)
}

// Reset removes every impairment and zeroes the counters.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/reset", nil, nil)
}

// Stats returns the relay's counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.do(ctx, http.MethodGet, "/stats", nil, &st)
	return st, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("udprelay: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("udprelay: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("udprelay: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("udprelay: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("udprelay: %s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("udprelay: %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("udprelay: %s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}
