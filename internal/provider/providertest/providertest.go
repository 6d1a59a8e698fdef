package providertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// Harness adapts the suite to one provider.
type Harness struct {
	// Provider is the provider under test, already connected to its target.
	Provider provider.Provider
	// Remote is the remote name put in requests and refs; default "local".
	Remote string
	// Package returns a package for one fresh instance. Each call may be
	// deployed alongside the others (so a local harness gives each its own
	// port). The service must answer HTTP GET on the manifest's health path
	// (or "/") on its first tcp port with 2xx, and print LogMarker.
	Package func(t *testing.T) *blueprint.Package
	// Env, when set, returns extra environment for a request (for example
	// what makes a re-executed test binary act as the service). The suite
	// adds the Blueprint SDK variables itself.
	Env func(t *testing.T, pkg *blueprint.Package) map[string]string
	// LogMarker is text the service writes to its output once up; empty
	// skips the log content checks.
	LogMarker string
	// Get performs an HTTP GET of path on a running instance and returns
	// the status code. Default: plain HTTP to Status.Address, which suits
	// providers whose address is reachable from the test (local); remote
	// providers reach it through their tunnel.
	Get func(ctx context.Context, st provider.Status, path string) (int, error)
	// NoTunnel declares that the provider reaches instances directly;
	// EstablishTunnel must then return ErrUnsupported.
	NoTunnel bool
	// Timeout bounds each wait for a state; default 2 minutes.
	Timeout time.Duration
}

func (h *Harness) defaults() {
	if h.Remote == "" {
		h.Remote = "local"
	}
	if h.Timeout <= 0 {
		h.Timeout = 2 * time.Minute
	}
	if h.Get == nil {
		h.Get = plainGet
	}
}

func plainGet(ctx context.Context, st provider.Status, path string) (int, error) {
	if st.Address == "" {
		return 0, errors.New("status has no address")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.Address+path, nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.Provider == nil || h.Package == nil {
		t.Fatal("providertest: Harness needs Provider and Package")
	}
	h.defaults()
	s := &suite{h: h}
	t.Run("DeployRunsAndAnswers", s.deployRunsAndAnswers)
	t.Run("DeployIsIdempotent", s.deployIsIdempotent)
	t.Run("StatusOfUnknownInstance", s.statusUnknown)
	t.Run("TerminateIsIdempotent", s.terminate)
	t.Run("Logs", s.logs)
	t.Run("ListOwned", s.listOwned)
	t.Run("Resources", s.resources)
	t.Run("EstimateCost", s.estimateCost)
	t.Run("EstablishTunnel", s.establishTunnel)
}

type suite struct{ h Harness }

// NewInstanceID returns a fresh id in bpm's bp-<random> form.
func NewInstanceID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "bp-t" + hex.EncodeToString(b)
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// request builds a DeployRequest the way the manager does: the SDK's
// variables plus the manifest's env plus the harness's.
func (s *suite) request(t *testing.T) provider.DeployRequest {
	pkg := s.h.Package(t)
	const bid, sid = 3, 7
	env := map[string]string{
		"BLUEPRINT_ID": fmt.Sprint(bid),
		"SERVICE_ID":   fmt.Sprint(sid),
		"PROTOCOL":     "tangle",
		"CHAIN":        "local_testnet",
		"HTTP_RPC_URL": "http://127.0.0.1:9944/",
		"WS_RPC_URL":   "ws://127.0.0.1:9944/",
		"KEYSTORE_URI": "./keystore",
		"BOOTNODES":    "",
	}
	for k, v := range pkg.Manifest.Env {
		env[k] = v
	}
	if s.h.Env != nil {
		for k, v := range s.h.Env(t, pkg) {
			env[k] = v
		}
	}
	return provider.DeployRequest{
		InstanceID:  NewInstanceID(),
		Remote:      s.h.Remote,
		BlueprintID: bid,
		ServiceID:   sid,
		Package:     pkg,
		Env:         env,
	}
}

func (s *suite) ref(req provider.DeployRequest, h provider.Handle) provider.Ref {
	return provider.Ref{InstanceID: req.InstanceID, Remote: s.h.Remote, Handle: h}
}

// deploy deploys req and registers its termination as cleanup, which runs
// even when the test fails.
func (s *suite) deploy(t *testing.T, ctx context.Context, req provider.DeployRequest) provider.Handle {
	t.Helper()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), s.h.Timeout)
		defer cancel()
		if err := s.h.Provider.Terminate(cctx, s.ref(req, nil)); err != nil {
			t.Errorf("cleanup: terminate %s: %v", req.InstanceID, err)
		}
	})
	h, err := s.h.Provider.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	return h
}

// waitRunning polls Status until running; failed or terminated end the wait.
func (s *suite) waitRunning(t *testing.T, ctx context.Context, ref provider.Ref) provider.Status {
	t.Helper()
	var last provider.Status
	var lastErr error
	for {
		st, err := s.h.Provider.Status(ctx, ref)
		last, lastErr = st, err
		if err == nil {
			switch st.State {
			case provider.StateRunning:
				return st
			case provider.StateFailed, provider.StateTerminated:
				t.Fatalf("instance %s is %s: %s", ref.InstanceID, st.State, st.Message)
			}
		}
		if !sleep(ctx, 100*time.Millisecond) {
			t.Fatalf("instance %s never running; last status %+v, err %v", ref.InstanceID, last, lastErr)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func healthPath(pkg *blueprint.Package) string {
	if h := pkg.Manifest.Health; h != nil && h.HTTP != "" {
		if strings.HasPrefix(h.HTTP, "/") {
			return h.HTTP
		}
		return "/" + h.HTTP
	}
	return "/"
}

func (s *suite) deployRunsAndAnswers(t *testing.T) {
	ctx := s.ctx(t)
	req := s.request(t)
	h := s.deploy(t, ctx, req)
	st := s.waitRunning(t, ctx, s.ref(req, h))
	if st.Address == "" {
		t.Fatal("running instance has no address")
	}
	code, err := s.h.Get(ctx, st, healthPath(req.Package))
	if err != nil {
		t.Fatalf("GET %s: %v", st.Address, err)
	}
	if code < 200 || code > 299 {
		t.Fatalf("GET %s: status %d", st.Address, code)
	}
}

func (s *suite) deployIsIdempotent(t *testing.T) {
	ctx := s.ctx(t)
	req := s.request(t)
	h1 := s.deploy(t, ctx, req)
	h2, err := s.h.Provider.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("second Deploy of the same instance: %v", err)
	}
	if errors.Is(err, provider.ErrExists) {
		t.Fatal("second Deploy returned ErrExists")
	}
	s.waitRunning(t, ctx, s.ref(req, h2))
	s.waitRunning(t, ctx, s.ref(req, h1))
	if l, ok := s.h.Provider.(provider.Lister); ok {
		owned, err := l.ListOwned(ctx)
		if err != nil {
			t.Fatalf("ListOwned: %v", err)
		}
		if n := count(owned, req.InstanceID); n != 1 {
			t.Fatalf("ListOwned lists %s %d times after two deploys, want once", req.InstanceID, n)
		}
	}
}

func count(owned []provider.Owned, id string) int {
	n := 0
	for _, o := range owned {
		if o.InstanceID == id {
			n++
		}
	}
	return n
}

func (s *suite) statusUnknown(t *testing.T) {
	ctx := s.ctx(t)
	_, err := s.h.Provider.Status(ctx, provider.Ref{InstanceID: NewInstanceID(), Remote: s.h.Remote})
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Status of an unknown instance: err = %v, want ErrNotFound", err)
	}
}

func (s *suite) terminate(t *testing.T) {
	ctx := s.ctx(t)
	req := s.request(t)
	h := s.deploy(t, ctx, req)
	ref := s.ref(req, h)
	s.waitRunning(t, ctx, ref)
	if err := s.h.Provider.Terminate(ctx, ref); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	st, err := s.h.Provider.Status(ctx, ref)
	switch {
	case errors.Is(err, provider.ErrNotFound):
	case err != nil:
		t.Fatalf("Status after Terminate: %v", err)
	case st.State != provider.StateTerminated:
		t.Fatalf("Status after Terminate = %s (%s), want terminated", st.State, st.Message)
	}
	if err := s.h.Provider.Terminate(ctx, ref); err != nil {
		t.Fatalf("second Terminate: %v", err)
	}
	if err := s.h.Provider.Terminate(ctx, provider.Ref{InstanceID: NewInstanceID(), Remote: s.h.Remote}); err != nil {
		t.Fatalf("Terminate of a never-deployed instance: %v", err)
	}
}

// syncBuffer lets Follow write from its goroutine while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *suite) logs(t *testing.T) {
	lg, ok := s.h.Provider.(provider.Logser)
	if !ok {
		t.Skip("provider has no logs capability")
	}
	ctx := s.ctx(t)
	req := s.request(t)
	h := s.deploy(t, ctx, req)
	ref := s.ref(req, h)
	s.waitRunning(t, ctx, ref)
	if s.h.LogMarker == "" {
		return
	}
	// Output may lag the process start; poll.
	for {
		var buf bytes.Buffer
		if err := lg.Logs(ctx, ref, provider.LogOptions{}, &buf); err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if strings.Contains(buf.String(), s.h.LogMarker) {
			break
		}
		if !sleep(ctx, 100*time.Millisecond) {
			t.Fatalf("Logs never contained %q; got:\n%s", s.h.LogMarker, buf.String())
		}
	}

	var tail bytes.Buffer
	if err := lg.Logs(ctx, ref, provider.LogOptions{Tail: 1}, &tail); err != nil {
		t.Fatalf("Logs tail: %v", err)
	}
	if n := strings.Count(strings.TrimSuffix(tail.String(), "\n"), "\n"); tail.Len() == 0 || n > 0 {
		t.Fatalf("Logs Tail 1 returned %d lines: %q", n+1, tail.String())
	}

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- lg.Logs(fctx, ref, provider.LogOptions{Follow: true}, &out) }()
	for !strings.Contains(out.String(), s.h.LogMarker) {
		if !sleep(ctx, 50*time.Millisecond) {
			t.Fatalf("Follow never wrote %q", s.h.LogMarker)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Follow returned %v after cancel", err)
		}
	case <-ctx.Done():
		t.Fatal("Follow did not return after its context was cancelled")
	}

	if err := lg.Logs(ctx, provider.Ref{InstanceID: NewInstanceID(), Remote: s.h.Remote}, provider.LogOptions{}, io.Discard); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Logs of an unknown instance: err = %v, want ErrNotFound", err)
	}
}

func (s *suite) listOwned(t *testing.T) {
	l, ok := s.h.Provider.(provider.Lister)
	if !ok {
		t.Skip("provider has no list-owned capability")
	}
	ctx := s.ctx(t)
	run, gone := s.request(t), s.request(t)
	hr := s.deploy(t, ctx, run)
	hg := s.deploy(t, ctx, gone)
	s.waitRunning(t, ctx, s.ref(run, hr))
	s.waitRunning(t, ctx, s.ref(gone, hg))
	if err := s.h.Provider.Terminate(ctx, s.ref(gone, hg)); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	owned, err := l.ListOwned(ctx)
	if err != nil {
		t.Fatalf("ListOwned: %v", err)
	}
	if n := count(owned, run.InstanceID); n != 1 {
		t.Errorf("ListOwned lists running %s %d times, want once", run.InstanceID, n)
	}
	if n := count(owned, gone.InstanceID); n != 0 {
		t.Errorf("ListOwned lists terminated %s", gone.InstanceID)
	}
	for _, o := range owned {
		if o.InstanceID == run.InstanceID {
			if len(o.Handle) == 0 {
				t.Errorf("owned %s has no handle", o.InstanceID)
			}
			// The listed handle must be usable as is: reconcile adopts by it.
			st, err := s.h.Provider.Status(ctx, provider.Ref{InstanceID: o.InstanceID, Remote: s.h.Remote, Handle: o.Handle})
			if err != nil || st.State.Final() {
				t.Errorf("Status by listed handle = %+v, %v", st, err)
			}
		}
	}
}

func (s *suite) resources(t *testing.T) {
	r, err := s.h.Provider.Resources(s.ctx(t))
	if err != nil {
		t.Fatalf("Resources: %v", err)
	}
	if r.CPUMillis < 0 || r.MemoryBytes < 0 || r.GPUs < 0 || r.Instances < -1 {
		t.Fatalf("Resources has negative values: %+v", r)
	}
	if r.CPUMillis == 0 && r.MemoryBytes == 0 && r.Instances == 0 {
		t.Fatalf("Resources reports nothing available: %+v", r)
	}
}

func (s *suite) estimateCost(t *testing.T) {
	pkg := s.h.Package(t)
	c, err := s.h.Provider.EstimateCost(s.ctx(t), provider.CostRequest{Remote: s.h.Remote, Package: pkg})
	if err != nil {
		t.Fatalf("EstimateCost: %v", err)
	}
	if c.HourlyUSD < 0 || math.IsNaN(c.HourlyUSD) || math.IsInf(c.HourlyUSD, 0) {
		t.Fatalf("EstimateCost = %v", c.HourlyUSD)
	}
	if c.Detail == "" {
		t.Fatal("EstimateCost gives no detail")
	}
}

func (s *suite) establishTunnel(t *testing.T) {
	if !s.h.NoTunnel {
		// Tunnels need a hub; providers that have one test it in their
		// own integration tests.
		t.Skip("provider uses a tunnel; covered by its integration tests")
	}
	_, err := s.h.Provider.EstablishTunnel(s.ctx(t), provider.TunnelSpec{Remote: s.h.Remote})
	if !errors.Is(err, provider.ErrUnsupported) {
		t.Fatalf("EstablishTunnel on a provider without tunnels: err = %v, want ErrUnsupported", err)
	}
}

// EchoPackage is a package in dir whose container source is image, an HTTP
// server on 8080 answering / (the test environment's test image).
func EchoPackage(dir, image string) *blueprint.Package {
	return &blueprint.Package{
		Dir: dir, File: dir + "/blueprint.toml",
		Manifest: blueprint.Manifest{
			Name:      "httpecho",
			Version:   "0.1.0",
			Sources:   []blueprint.Source{{Kind: blueprint.SourceContainer, Image: image}},
			Resources: blueprint.Resources{CPU: "500m", Memory: "64Mi"},
			Ports:     []blueprint.Port{{Name: "http", Port: 8080, Protocol: "tcp"}},
			Env:       map[string]string{"GREETING": "hello"},
			Health:    &blueprint.Health{HTTP: "/"},
		},
	}
}

// ContainerPackage is EchoPackage as a Harness.Package: a fresh directory
// per instance.
func ContainerPackage(image string) func(t *testing.T) *blueprint.Package {
	return func(t *testing.T) *blueprint.Package { return EchoPackage(t.TempDir(), image) }
}
