package bridge

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
	"github.com/bpm-project/bpm/internal/registry"
)

type harness struct {
	reg    *registry.Registry
	srv    *Server
	client *Client
	path   string
	cancel context.CancelFunc
	done   chan error
}

func shortTempDir(t *testing.T) string {
	// t.TempDir paths can exceed a unix socket's 107 bytes.
	d, err := os.MkdirTemp("", "bpmbr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newHarness(t *testing.T, reg *registry.Registry, cfg Config) *harness {
	t.Helper()
	if reg == nil {
		var err error
		reg, err = registry.Open(context.Background(), registry.NewMemStore(), nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg.Registry = reg
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := SocketPath(shortTempDir(t), 3, 7)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{reg: reg, srv: srv, path: path, cancel: cancel, done: make(chan error, 1)}
	tr := &Unix{Path: path}
	ln, err := tr.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		err := srv.Serve(ctx, ln)
		if cerr := tr.Cleanup(); err == nil {
			err = cerr
		}
		h.done <- err
	}()
	h.client, err = DialUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.client.Close()
		h.stop(t)
	})
	return h
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok && err != nil {
			t.Errorf("serve: %v", err)
		}
		close(h.done)
	case <-time.After(10 * time.Second):
		t.Error("bridge did not stop")
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || (msg != "" && st.Message() != msg) {
		t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
}

func owner(b byte) *bridgepb.ServiceOwner {
	return &bridgepb.ServiceOwner{KeyType: bridgepb.ServiceOwner_ECDSA, KeyBytes: []byte{2, b}}
}

func regReq(id uint64, url string) *bridgepb.RegisterBlueprintServiceProxyRequest {
	return &bridgepb.RegisterBlueprintServiceProxyRequest{
		ServiceId: id, ApiKeyPrefix: "ak_", UpstreamUrl: url,
		Owners: []*bridgepb.ServiceOwner{owner(1)},
	}
}

func TestSocketLayout(t *testing.T) {
	if got := SocketPath("/run/user/1000/blueprint-manager", 3, 7); got != "/run/user/1000/blueprint-manager/svc-3-7/svc-3-7.sock" {
		t.Fatalf("SocketPath = %s", got)
	}
	if got := HybridVsockPath("/r/svc-3-7/svc-3-7.sock"); got != "/r/svc-3-7/svc-3-7.sock_8000" {
		t.Fatalf("HybridVsockPath = %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/5")
	if got := DefaultRuntimeDir(); got != "/run/user/5/blueprint-manager" {
		t.Fatalf("DefaultRuntimeDir = %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := DefaultRuntimeDir(); got != "blueprint-manager/run" {
		t.Fatalf("DefaultRuntimeDir = %s", got)
	}
}

func TestPingReadyAndPermissions(t *testing.T) {
	var fired int
	h := newHarness(t, nil, Config{OnFirstPing: func() { fired++ }})
	select {
	case <-h.srv.Ready():
		t.Fatal("ready before ping")
	default:
	}
	ctx := context.Background()
	for range 3 {
		if _, err := h.client.Ping(ctx, &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.srv.Ready():
	case <-time.After(time.Second):
		t.Fatal("Ready not closed after Ping")
	}
	if fired != 1 {
		t.Fatalf("OnFirstPing fired %d times", fired)
	}
	fi, err := os.Stat(h.path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode = %v, %v", fi.Mode(), err)
	}
	di, _ := os.Stat(filepath.Dir(h.path))
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode = %v", di.Mode())
	}
}

func TestRegisterLifecycle(t *testing.T) {
	h := newHarness(t, nil, Config{InstanceID: "bp-test"})
	ctx := context.Background()
	c := h.client

	// Calls that need a pin, before any registration.
	_, err := c.UnregisterBlueprintServiceProxy(ctx, &bridgepb.UnregisterBlueprintServiceProxyRequest{ServiceId: 7})
	wantCode(t, err, codes.FailedPrecondition, "No service registered on this bridge")
	_, err = c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 7, OwnerToAdd: owner(2)})
	wantCode(t, err, codes.FailedPrecondition, "No service registered on this bridge")
	_, err = c.RemoveOwnerFromService(ctx, &bridgepb.RemoveOwnerFromServiceRequest{ServiceId: 7, OwnerToRemove: owner(2)})
	wantCode(t, err, codes.FailedPrecondition, "No service registered on this bridge")
	_, err = c.UpdateBlueprintServiceTlsProfile(ctx, &bridgepb.UpdateBlueprintServiceTlsProfileRequest{ServiceId: 7})
	wantCode(t, err, codes.FailedPrecondition, "No service registered on this bridge")

	// TLS validation on register.
	bad := regReq(7, "http://127.0.0.1:1")
	bad.TlsProfile = &bridgepb.TlsProfileConfig{TlsEnabled: true, EncryptedServerCert: []byte{1}}
	_, err = c.RegisterBlueprintServiceProxy(ctx, bad)
	wantCode(t, err, codes.InvalidArgument, "Server certificate and key are required when TLS is enabled")
	bad.TlsProfile = &bridgepb.TlsProfileConfig{TlsEnabled: true, RequireClientMtls: true, EncryptedServerCert: []byte{1}, EncryptedServerKey: []byte{1}}
	_, err = c.RegisterBlueprintServiceProxy(ctx, bad)
	wantCode(t, err, codes.InvalidArgument, "Client CA bundle is required when mutual TLS authentication is enabled")
	if _, pinned := h.srv.Pinned(); pinned {
		t.Fatal("a refused register pinned the bridge")
	}

	// First registration.
	if _, err := c.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:9000")); err != nil {
		t.Fatal(err)
	}
	if p, ok := h.srv.Pinned(); !ok || p != 7 {
		t.Fatalf("Pinned = %d %v", p, ok)
	}
	rec, err := h.reg.Get(registry.ID{Main: 7})
	if err != nil || rec.UpstreamURL != "http://127.0.0.1:9000" || rec.APIKeyPrefix != "ak_" || rec.InstanceID != "bp-test" || rec.Transport != registry.TransportTCPLocal {
		t.Fatalf("record = %+v, %v", rec, err)
	}

	// Pinned to 7: every call for another id is refused, register included.
	_, err = c.RegisterBlueprintServiceProxy(ctx, regReq(8, "http://127.0.0.1:1"))
	wantCode(t, err, codes.PermissionDenied, "Bridge is pinned to service_id 7, cannot operate on 8")
	_, err = c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 8, OwnerToAdd: owner(2)})
	wantCode(t, err, codes.PermissionDenied, "Bridge is pinned to service_id 7, cannot operate on 8")
	_, err = c.UnregisterBlueprintServiceProxy(ctx, &bridgepb.UnregisterBlueprintServiceProxyRequest{ServiceId: 8})
	wantCode(t, err, codes.PermissionDenied, "Bridge is pinned to service_id 7, cannot operate on 8")
	// Pin checks come before argument checks.
	_, err = c.RemoveOwnerFromService(ctx, &bridgepb.RemoveOwnerFromServiceRequest{ServiceId: 8})
	wantCode(t, err, codes.PermissionDenied, "Bridge is pinned to service_id 7, cannot operate on 8")

	// Owners.
	_, err = c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 7})
	wantCode(t, err, codes.InvalidArgument, "owner_to_add is required")
	_, err = c.RemoveOwnerFromService(ctx, &bridgepb.RemoveOwnerFromServiceRequest{ServiceId: 7})
	wantCode(t, err, codes.InvalidArgument, "owner_to_remove is required")
	for range 2 {
		if _, err := c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 7, OwnerToAdd: owner(2)}); err != nil {
			t.Fatal(err)
		}
	}
	bn := &bridgepb.ServiceOwner{KeyType: bridgepb.ServiceOwner_KeyType(3), KeyBytes: make([]byte, 64)}
	if _, err := c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 7, OwnerToAdd: bn}); err != nil {
		t.Fatal(err)
	}
	rec, _ = h.reg.Get(registry.ID{Main: 7})
	if len(rec.Owners) != 3 || rec.Owners[2].KeyType != registry.KeyTypeBn254Bls {
		t.Fatalf("owners = %+v", rec.Owners)
	}
	for range 2 {
		if _, err := c.RemoveOwnerFromService(ctx, &bridgepb.RemoveOwnerFromServiceRequest{ServiceId: 7, OwnerToRemove: owner(2)}); err != nil {
			t.Fatal(err)
		}
	}
	rec, _ = h.reg.Get(registry.ID{Main: 7})
	if len(rec.Owners) != 2 {
		t.Fatalf("owners after remove = %+v", rec.Owners)
	}

	// TLS profile update.
	sni := "svc.example"
	good := &bridgepb.TlsProfileConfig{TlsEnabled: true, EncryptedServerCert: []byte{1}, EncryptedServerKey: []byte{2}, Sni: &sni, AllowedDnsNames: []string{"a"}}
	if _, err := c.UpdateBlueprintServiceTlsProfile(ctx, &bridgepb.UpdateBlueprintServiceTlsProfileRequest{ServiceId: 7, TlsProfile: good}); err != nil {
		t.Fatal(err)
	}
	rec, _ = h.reg.Get(registry.ID{Main: 7})
	if rec.TLSProfile == nil || !rec.TLSProfile.TLSEnabled || *rec.TLSProfile.SNI != sni || rec.TLSProfile.SubjectAltNameTemplate != nil {
		t.Fatalf("tls profile = %+v", rec.TLSProfile)
	}
	_, err = c.UpdateBlueprintServiceTlsProfile(ctx, &bridgepb.UpdateBlueprintServiceTlsProfileRequest{ServiceId: 7, TlsProfile: &bridgepb.TlsProfileConfig{TlsEnabled: true}})
	wantCode(t, err, codes.InvalidArgument, "Server certificate and key are required when TLS is enabled")
	if _, err := c.UpdateBlueprintServiceTlsProfile(ctx, &bridgepb.UpdateBlueprintServiceTlsProfileRequest{ServiceId: 7}); err != nil {
		t.Fatal(err)
	}
	rec, _ = h.reg.Get(registry.ID{Main: 7})
	if rec.TLSProfile != nil {
		t.Fatalf("absent profile did not turn TLS off: %+v", rec.TLSProfile)
	}

	// Re-register while pinned is a full overwrite, owners included.
	over := regReq(7, "unix:///run/x.sock")
	over.Owners = nil
	if _, err := c.RegisterBlueprintServiceProxy(ctx, over); err != nil {
		t.Fatal(err)
	}
	rec, _ = h.reg.Get(registry.ID{Main: 7})
	if rec.UpstreamURL != "unix:///run/x.sock" || len(rec.Owners) != 0 || rec.Transport != registry.TransportUnix {
		t.Fatalf("overwrite = %+v", rec)
	}

	// Record removed behind the bridge's back: NOT_FOUND.
	if err := h.reg.Delete(ctx, registry.ID{Main: 7}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 7, OwnerToAdd: owner(2)})
	wantCode(t, err, codes.NotFound, "Service 7:0 not found")
	_, err = c.UpdateBlueprintServiceTlsProfile(ctx, &bridgepb.UpdateBlueprintServiceTlsProfileRequest{ServiceId: 7})
	wantCode(t, err, codes.NotFound, "Service 7:0 not found")

	// Unregister clears the pin; the bridge may then register another id.
	if _, err := c.UnregisterBlueprintServiceProxy(ctx, &bridgepb.UnregisterBlueprintServiceProxyRequest{ServiceId: 7}); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.srv.Pinned(); ok {
		t.Fatal("still pinned after unregister")
	}
	if _, err := c.RegisterBlueprintServiceProxy(ctx, regReq(9, "http://127.0.0.1:9")); err != nil {
		t.Fatal(err)
	}
}

func TestAlreadyExistsAcrossBridges(t *testing.T) {
	reg, _ := registry.Open(context.Background(), registry.NewMemStore(), nil)
	a := newHarness(t, reg, Config{})
	b := newHarness(t, reg, Config{})
	ctx := context.Background()
	if _, err := a.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	_, err := b.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:2"))
	wantCode(t, err, codes.AlreadyExists, "Service 7:0 is already registered by another bridge")
	if _, ok := b.srv.Pinned(); ok {
		t.Fatal("losing bridge pinned")
	}
	rec, _ := reg.Get(registry.ID{Main: 7})
	if rec.UpstreamURL != "http://127.0.0.1:1" {
		t.Fatalf("record taken over: %+v", rec)
	}
}

func TestExpectedServiceID(t *testing.T) {
	e := uint64(5)
	h := newHarness(t, nil, Config{ExpectedServiceID: &e})
	ctx := context.Background()
	_, err := h.client.RegisterBlueprintServiceProxy(ctx, regReq(6, "http://127.0.0.1:1"))
	wantCode(t, err, codes.PermissionDenied, "Bridge is configured for service_id 5, got 6")
	// Before argument checks, and before the no-pin check.
	_, err = h.client.AddOwnerToService(ctx, &bridgepb.AddOwnerToServiceRequest{ServiceId: 6})
	wantCode(t, err, codes.PermissionDenied, "Bridge is configured for service_id 5, got 6")
	if _, err := h.client.RegisterBlueprintServiceProxy(ctx, regReq(5, "http://127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
}

func TestRequestPort(t *testing.T) {
	h := newHarness(t, nil, Config{})
	ctx := context.Background()
	// Any port.
	r, err := h.client.RequestPort(ctx, &bridgepb.PortRequest{})
	if err != nil || r.Port == 0 {
		t.Fatalf("RequestPort(0) = %v, %v", r, err)
	}
	// A free preferred port is returned as is; 16-bit truncation applies.
	free := r.Port
	r, err = h.client.RequestPort(ctx, &bridgepb.PortRequest{PreferredPort: free | 1<<16})
	if err != nil || r.Port != free {
		t.Fatalf("RequestPort(%d|1<<16) = %v, %v; want %d", free, r, err, free)
	}
	// A busy preferred port falls back to another one.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := uint32(ln.Addr().(*net.TCPAddr).Port)
	r, err = h.client.RequestPort(ctx, &bridgepb.PortRequest{PreferredPort: busy})
	if err != nil || r.Port == 0 || r.Port == busy {
		t.Fatalf("RequestPort(busy %d) = %v, %v", busy, r, err)
	}
	// Allocation failure is UNAVAILABLE.
	h2 := newHarness(t, nil, Config{RequestPort: func(context.Context, uint16) (uint16, error) { return 0, errors.New("no") }})
	_, err = h2.client.RequestPort(ctx, &bridgepb.PortRequest{})
	wantCode(t, err, codes.Unavailable, "")
}

func TestShutdownRemovesRecordAndSocket(t *testing.T) {
	h := newHarness(t, nil, Config{})
	ctx := context.Background()
	if _, err := h.client.RegisterBlueprintServiceProxy(ctx, regReq(7, "http://127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	h.stop(t)
	h.done = make(chan error, 1)
	h.done <- nil // the cleanup's stop finds it already stopped
	if _, err := h.reg.Get(registry.ID{Main: 7}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("record after shutdown: %v", err)
	}
	if _, err := os.Lstat(h.path); !os.IsNotExist(err) {
		t.Fatalf("socket after shutdown: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "b.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	tr := &Unix{Path: path}
	ln, err := tr.Listen(context.Background())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	if err := tr.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// A regular file at the path is not ours: refuse, never delete it.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Unix{Path: path}).Listen(context.Background()); err == nil {
		t.Fatal("listened over a regular file")
	}
	long := "/tmp/" + string(make([]byte, 120))
	if _, err := (&Unix{Path: long}).Listen(context.Background()); err == nil {
		t.Fatal("accepted an over-long socket path")
	}
}

func TestTunnelTransport(t *testing.T) {
	// Any net.Listener: here a loopback TCP one standing in for the relay.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.Open(context.Background(), registry.NewMemStore(), nil)
	if _, err := New(Config{Registry: reg, Transport: registry.TransportTunnel}); err == nil {
		t.Fatal("tunnel bridge without gateway accepted")
	}
	srv, err := New(Config{Registry: reg, Transport: registry.TransportTunnel, Gateway: "aws", InstanceID: "bp-r"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTransport(ctx, &Tunnel{Listener: ln}) }()
	addr := ln.Addr().String()
	c, err := DialFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.RegisterBlueprintServiceProxy(ctx, regReq(11, "http://10.0.0.5:8080")); err != nil {
		t.Fatal(err)
	}
	rec, _ := reg.Get(registry.ID{Main: 11})
	if rec.Transport != registry.TransportTunnel || rec.Gateway != "aws" {
		t.Fatalf("record = %+v", rec)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Get(registry.ID{Main: 11}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatal("terminating the tunnel bridge left its route")
	}
}

func TestVsock(t *testing.T) {
	for _, tc := range []struct {
		id   uint64
		want uint32
		ok   bool
	}{{0, 3, true}, {7, 10, true}, {0xFFFFFFFF - 4, 0xFFFFFFFF - 1, true}, {0xFFFFFFFF - 3, 0, false}, {1 << 32, 0, false}} {
		got, err := GuestCID(tc.id)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("GuestCID(%d) = %d, %v", tc.id, got, err)
		}
	}
	if !admitCID(10, 10) || admitCID(11, 10) || admitCID(2, 10) {
		t.Fatal("admitCID")
	}
	// Hybrid vsock: a unix socket at <base>_8000.
	base := filepath.Join(shortTempDir(t), "svc-1-7.sock")
	v := &Vsock{ServiceID: 7, BasePath: base}
	ln, err := v.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != base+"_8000" {
		t.Fatalf("hybrid addr = %s", ln.Addr())
	}
	ln.Close()
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// Native vsock: no device here, so Listen must fail cleanly (no panic,
	// no leaked fd) — or, on a host with vsock, listen and close.
	nv := &Vsock{ServiceID: 7, Native: true, Port: 58000}
	ln, err = nv.Listen(context.Background())
	if err != nil {
		t.Logf("native vsock unavailable, as expected here: %v", err)
	} else {
		if ln.Addr().String() != "vsock:4294967295:58000" {
			t.Errorf("native addr = %s", ln.Addr())
		}
		ln.Close()
	}
	if _, err := (&Vsock{ServiceID: 1 << 40, Native: true}).Listen(context.Background()); err == nil {
		t.Fatal("native vsock accepted an id without a CID")
	}
	if TransportVsock.String() != "vsock" || TransportUnix.String() != "unix" || TransportTunnel.String() != "tunnel" {
		t.Fatal("TransportType.String")
	}
}

// FuzzBridgeMessages feeds random bytes through protobuf unmarshal and each
// handler: nothing may panic, and every error must be a gRPC status with one
// of the codes the wire sheet allows.
func FuzzBridgeMessages(f *testing.F) {
	seed, _ := proto.Marshal(regReq(7, "http://127.0.0.1:1"))
	f.Add(uint8(0), seed)
	f.Add(uint8(2), []byte{0x08, 0x07, 0x12, 0x02, 0x08, 0x03})
	f.Add(uint8(5), []byte{0x08, 0x07, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		reg, _ := registry.Open(context.Background(), registry.NewMemStore(), nil)
		srv, _ := New(Config{Registry: reg, RequestPort: func(context.Context, uint16) (uint16, error) { return 1, nil }})
		ctx := context.Background()
		// Pin first so that the pinned paths are exercised too.
		if which&0x80 != 0 {
			if _, err := srv.RegisterBlueprintServiceProxy(ctx, regReq(7, "")); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		switch which % 7 {
		case 0:
			m := &bridgepb.RegisterBlueprintServiceProxyRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.RegisterBlueprintServiceProxy(ctx, m)
		case 1:
			m := &bridgepb.UnregisterBlueprintServiceProxyRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.UnregisterBlueprintServiceProxy(ctx, m)
		case 2:
			m := &bridgepb.AddOwnerToServiceRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.AddOwnerToService(ctx, m)
		case 3:
			m := &bridgepb.RemoveOwnerFromServiceRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.RemoveOwnerFromService(ctx, m)
		case 4:
			m := &bridgepb.UpdateBlueprintServiceTlsProfileRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.UpdateBlueprintServiceTlsProfile(ctx, m)
		case 5:
			m := &bridgepb.PortRequest{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.RequestPort(ctx, m)
		case 6:
			m := &emptypb.Empty{}
			if proto.Unmarshal(data, m) != nil {
				return
			}
			_, err = srv.Ping(ctx, m)
		}
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		if !ok {
			t.Fatalf("non-status error %v", err)
		}
		switch st.Code() {
		case codes.PermissionDenied, codes.FailedPrecondition, codes.AlreadyExists, codes.InvalidArgument, codes.NotFound, codes.Unavailable:
		default:
			t.Fatalf("unexpected code %v: %s", st.Code(), st.Message())
		}
	})
}
