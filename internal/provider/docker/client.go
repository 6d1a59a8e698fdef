package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// maxAPIVersion is the newest Engine API version this client is written
// against. Negotiation takes the lower of it and the daemon's version, as the
// docker CLI does: every field bpm sends exists since 1.25, and newer daemons
// (Docker 29 refuses anything below 1.44) still accept 1.47.
const maxAPIVersion = "1.47"

// minAPIVersion is the oldest daemon API bpm talks to (Docker 20.10 speaks
// 1.41); older ones lack fields bpm relies on, such as NanoCpus semantics
// and label filters as used here.
const minAPIVersion = "1.40"

// client is the handful of Docker Engine API calls the provider needs. It is
// safe for concurrent use.
type client struct {
	hc    *http.Client
	base  string // scheme://host, no trailing slash, no version
	token string // bearer token for hosted APIs; never logged

	mu      sync.Mutex
	version string // negotiated; empty until the first successful ping
}

// apiError is a non-2xx answer from the engine.
type apiError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// isStatus reports whether err is an engine answer with one of codes.
func isStatus(err error, codes ...int) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.Status == c {
			return true
		}
	}
	return false
}

// ping checks the engine answers and returns its API version.
func (c *client) ping(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/_ping", nil)
	if err != nil {
		return "", err
	}
	c.auth(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return "", &apiError{Method: "GET", Path: "/_ping", Status: resp.StatusCode, Message: resp.Status}
	}
	v := resp.Header.Get("Api-Version")
	if v == "" {
		// Daemons before 1.25 did not send it; they are below our minimum.
		return "", errors.New("engine sent no Api-Version header (Docker before 1.13?)")
	}
	return v, nil
}

// negotiate settles the API version once; a failure is retried on the next
// call so a daemon that was briefly down does not poison the provider.
func (c *client) negotiate(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return c.version, nil
	}
	server, err := c.ping(ctx)
	if err != nil {
		return "", err
	}
	v := maxAPIVersion
	if versionLess(server, v) {
		v = server
	}
	if versionLess(v, minAPIVersion) {
		return "", fmt.Errorf("engine API %s is older than %s (Docker 19.03); upgrade the engine", server, minAPIVersion)
	}
	c.version = v
	return v, nil
}

// versionLess compares "1.41"-style versions numerically.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func (c *client) auth(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// do sends one request and returns the response for a 2xx status; any other
// status becomes an *apiError carrying the engine's message.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string) (*http.Response, error) {
	v, err := c.negotiate(ctx)
	if err != nil {
		return nil, err
	}
	u := c.base + "/v" + v + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	c.auth(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var m struct{ Message string }
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	return nil, &apiError{Method: method, Path: path, Status: resp.StatusCode, Message: msg}
}

// call sends in as JSON (when not nil) and decodes the answer into out
// (when not nil). 304 Not Modified (start of a started container, stop of a
// stopped one) counts as success.
func (c *client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, q, body, ctype)
	if isStatus(err, http.StatusNotModified) {
		return nil
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// The Engine API types below hold only the fields bpm reads or sets.

type containerConfig struct {
	Image      string
	Cmd        []string          `json:",omitempty"`
	Env        []string          `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
	HostConfig hostConfig
}

type hostConfig struct {
	NetworkMode   string `json:",omitempty"`
	RestartPolicy restartPolicy
	NanoCPUs      int64 `json:"NanoCpus,omitempty"`
	Memory        int64 `json:",omitempty"`
	// PublishAllPorts stays false and PortBindings empty: instances are
	// reached through the gateway, never on the engine host's interfaces.
	PublishAllPorts bool
	CapAdd          []string `json:",omitempty"`
	Devices         []device `json:",omitempty"`
	Mounts          []mount  `json:",omitempty"`
}

type mount struct {
	Type   string // "volume"
	Source string // the volume's name
	Target string // path in the container
}

type device struct {
	PathOnHost, PathInContainer, CgroupPermissions string
}

type restartPolicy struct {
	Name string
}

type containerJSON struct {
	ID      string `json:"Id"`
	Name    string
	Created string
	State   struct {
		Status     string // created, running, paused, restarting, removing, exited, dead
		Running    bool
		Restarting bool
		ExitCode   int
		Error      string
		StartedAt  string
		FinishedAt string
	}
	RestartCount int
	Config       struct {
		Labels map[string]string
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
}

type containerSummary struct {
	ID     string `json:"Id"`
	Names  []string
	State  string
	Labels map[string]string
}

func (c *client) containerCreate(ctx context.Context, name string, cfg containerConfig) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	err := c.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, cfg, &out)
	return out.ID, err
}

func (c *client) containerStart(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(name)+"/start", nil, nil, nil)
}

func (c *client) containerInspect(ctx context.Context, name string) (containerJSON, error) {
	var out containerJSON
	err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil, nil, &out)
	return out, err
}

func (c *client) containerStop(ctx context.Context, name string, graceSeconds int) error {
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(name)+"/stop",
		url.Values{"t": {strconv.Itoa(graceSeconds)}}, nil, nil)
}

func (c *client) containerRemove(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/containers/"+url.PathEscape(name),
		url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
}

// containerList lists containers (running or not) carrying every label in
// labels ("key" or "key=value").
func (c *client) containerList(ctx context.Context, labels ...string) ([]containerSummary, error) {
	f, _ := json.Marshal(map[string][]string{"label": labels})
	var out []containerSummary
	err := c.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &out)
	return out, err
}

// containerLogs streams a non-TTY container's output, demultiplexed, to w.
func (c *client) containerLogs(ctx context.Context, name string, follow bool, tail int, w io.Writer) error {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if follow {
		q.Set("follow", "1")
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/logs", q, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Closing the body on cancellation unblocks a follow that waits for
	// output which may never come.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()
	err = demux(w, resp.Body)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// demux copies Docker's multiplexed stream (8-byte header: stream, 3 zero
// bytes, big-endian length; then the payload) to w, stdout and stderr merged
// as `docker logs` shows them in a terminal.
func demux(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("log stream header: %w", err)
		}
		switch hdr[0] {
		case 0, 1, 2, 3: // stdin, stdout, stderr, systemerr
		default:
			return fmt.Errorf("log stream: unknown stream %d (a TTY container?)", hdr[0])
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if hdr[0] == 3 {
			b, _ := io.ReadAll(io.LimitReader(br, n))
			return fmt.Errorf("engine: %s", bytes.TrimSpace(b))
		}
		if _, err := io.CopyN(w, br, n); err != nil {
			return fmt.Errorf("log stream: %w", err)
		}
	}
}

func (c *client) imageExists(ctx context.Context, ref string) (bool, error) {
	err := c.call(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, nil)
	if isStatus(err, http.StatusNotFound) {
		return false, nil
	}
	return err == nil, err
}

// imageLoad sends an image archive (docker save or OCI layout) to the
// engine, copying its progress lines to progress.
func (c *client) imageLoad(ctx context.Context, archive io.Reader, progress io.Writer) error {
	resp, err := c.do(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"0"}}, archive, "application/x-tar")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonMessages(resp.Body, progress)
}

// imagePull pulls ref from its registry (anonymously).
func (c *client) imagePull(ctx context.Context, ref string, progress io.Writer) error {
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	if i := strings.Index(name, "@"); i >= 0 {
		name, tag = ref[:i], ref[i+1:]
	}
	resp, err := c.do(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {name}, "tag": {tag}}, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonMessages(resp.Body, progress)
}

// jsonMessages reads the engine's JSON progress stream; an error reported
// in the stream (a 200 answer can still fail) becomes the return value.
func jsonMessages(r io.Reader, progress io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Stream, Status, ID, Progress string
			Error                        string
			ErrorDetail                  struct{ Message string }
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if progress == nil {
			continue
		}
		switch {
		case m.Stream != "":
			fmt.Fprint(progress, m.Stream)
		case m.Status != "":
			fmt.Fprintln(progress, strings.TrimSpace(strings.Join([]string{m.ID, m.Status, m.Progress}, " ")))
		}
	}
}

type networkJSON struct {
	ID     string `json:"Id"`
	Name   string
	Labels map[string]string
	IPAM   struct {
		Config []struct{ Subnet, Gateway string }
	}
}

func (c *client) networkInspect(ctx context.Context, name string) (networkJSON, error) {
	var out networkJSON
	err := c.call(ctx, http.MethodGet, "/networks/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

func (c *client) networkCreate(ctx context.Context, name string, labels map[string]string) error {
	in := map[string]any{"Name": name, "Driver": "bridge", "CheckDuplicate": true, "Labels": labels}
	return c.call(ctx, http.MethodPost, "/networks/create", nil, in, nil)
}

func (c *client) networkRemove(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/networks/"+url.PathEscape(name), nil, nil, nil)
}

func (c *client) volumeCreate(ctx context.Context, name string, labels map[string]string) error {
	in := map[string]any{"Name": name, "Labels": labels}
	return c.call(ctx, http.MethodPost, "/volumes/create", nil, in, nil)
}

func (c *client) volumeRemove(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), nil, nil, nil)
}

type engineInfo struct {
	NCPU     int
	MemTotal int64
}

func (c *client) info(ctx context.Context) (engineInfo, error) {
	var out engineInfo
	err := c.call(ctx, http.MethodGet, "/info", nil, nil, &out)
	return out, err
}
