package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bpm-project/bpm/internal/bridge/bridgepb"
	"github.com/bpm-project/bpm/internal/registry"
)

// PortFunc answers RequestPort: it returns a port the service may bind.
// preferred is already truncated to 16 bits; 0 means any.
type PortFunc func(ctx context.Context, preferred uint16) (uint16, error)

// Config configures one bridge Server (one per instance).
type Config struct {
	// Registry receives the service records. Required.
	Registry *registry.Registry
	// Logger; nil discards.
	Logger *slog.Logger
	// ExpectedServiceID, if set, is the only service id this bridge accepts
	// (the manager knows it from the deployment). Upstream supports it but
	// no caller sets it; bpm's manager should.
	ExpectedServiceID *uint64
	// Transport, Gateway and InstanceID are stamped on every record
	// registered through this bridge, so the proxy knows how to reach the
	// upstream and terminate knows what to remove. Transport "" means: unix
	// if the upstream URL is unix://, else tcp-local.
	Transport  registry.Transport
	Gateway    string
	InstanceID string
	// RequestPort overrides the default port probe (bind 0.0.0.0:preferred,
	// else 0.0.0.0:0, then close). A tunnel bridge should ask the gateway,
	// since the service binds on the remote host.
	RequestPort PortFunc
	// OnFirstPing, if set, is called once, on the first Ping.
	OnFirstPing func()
	// Upstream, if set, maps the upstream URL a service registers to the
	// one recorded. A remote instance's loopback is its own host's (or
	// container's), not the gateway's: the manager rewrites it to where the
	// gateway reaches the instance. An error refuses the registration with
	// UNAVAILABLE; the service may retry.
	Upstream func(ctx context.Context, upstream string) (string, error)
}

// Server implements bridgepb.BlueprintManagerBridgeServer.
type Server struct {
	bridgepb.UnimplementedBlueprintManagerBridgeServer

	cfg  Config
	log  *slog.Logger
	port PortFunc

	ready     chan struct{}
	readyOnce sync.Once

	// mu serialises the pin and registry changes of this bridge: two calls
	// racing on one bridge must see each other's pin.
	mu     sync.Mutex
	pinned *uint64
	// detached: shutdown keeps the pinned record (see Detach).
	detached bool

	grpcMu sync.Mutex
	grpc   *grpc.Server
}

var _ bridgepb.BlueprintManagerBridgeServer = (*Server)(nil)

// New returns a bridge Server.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("bridge: config: Registry is required")
	}
	if !cfg.Transport.Valid() {
		return nil, fmt.Errorf("bridge: config: unknown transport %q", cfg.Transport)
	}
	if cfg.Transport == registry.TransportTunnel && cfg.Gateway == "" {
		return nil, errors.New("bridge: config: tunnel transport needs a Gateway")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, port: cfg.RequestPort, ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.port == nil {
		s.port = ProbePort
	}
	return s, nil
}

// Ready is closed when the first Ping arrives: the manager's "alive" signal
// (upstream waits 480 s for it before it gives up on a launch).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Pinned returns the service id this bridge is pinned to.
func (s *Server) Pinned() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pinned == nil {
		return 0, false
	}
	return *s.pinned, true
}

// Ping implements the RPC: always OK; the first one fires Ready.
func (s *Server) Ping(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	s.readyOnce.Do(func() {
		close(s.ready)
		s.log.Info("bridge: first ping")
		if s.cfg.OnFirstPing != nil {
			s.cfg.OnFirstPing()
		}
	})
	return &emptypb.Empty{}, nil
}

// RequestPort implements the RPC.
func (s *Server) RequestPort(ctx context.Context, req *bridgepb.PortRequest) (*bridgepb.PortResponse, error) {
	preferred := uint16(req.GetPreferredPort()) // truncated to 16 bits, as upstream
	p, err := s.port(ctx, preferred)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "Failed to allocate port: %v", err)
	}
	return &bridgepb.PortResponse{Port: uint32(p)}, nil
}

// ProbePort is the default PortFunc, as upstream: bind TCP 0.0.0.0:preferred,
// falling back to 0.0.0.0:0, and close at once. Nothing is reserved; the
// port is only known to have been free a moment ago.
func ProbePort(ctx context.Context, preferred uint16) (uint16, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(int(preferred))))
	if err != nil && preferred != 0 {
		ln, err = lc.Listen(ctx, "tcp4", "0.0.0.0:0")
	}
	if err != nil {
		return 0, fmt.Errorf("bridge: probe port: %w", err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("bridge: probe port: %w", err)
	}
	return uint16(p), nil
}

// checkPin runs the pin checks, which come before any argument check.
// Callers hold s.mu.
func (s *Server) checkPin(g uint64, needPin bool) error {
	if e := s.cfg.ExpectedServiceID; e != nil && *e != g {
		return status.Errorf(codes.PermissionDenied, "Bridge is configured for service_id %d, got %d", *e, g)
	}
	if s.pinned != nil && *s.pinned != g {
		return status.Errorf(codes.PermissionDenied, "Bridge is pinned to service_id %d, cannot operate on %d", *s.pinned, g)
	}
	if needPin && s.pinned == nil {
		return status.Error(codes.FailedPrecondition, "No service registered on this bridge")
	}
	return nil
}

func validateTLS(p *bridgepb.TlsProfileConfig) error {
	if p == nil || !p.GetTlsEnabled() {
		return nil
	}
	if len(p.GetEncryptedServerCert()) == 0 || len(p.GetEncryptedServerKey()) == 0 {
		return status.Error(codes.InvalidArgument, "Server certificate and key are required when TLS is enabled")
	}
	if p.GetRequireClientMtls() && len(p.GetEncryptedClientCaBundle()) == 0 {
		return status.Error(codes.InvalidArgument, "Client CA bundle is required when mutual TLS authentication is enabled")
	}
	return nil
}

func tlsFromPB(p *bridgepb.TlsProfileConfig) *registry.TLSProfile {
	if p == nil {
		return nil
	}
	return &registry.TLSProfile{
		TLSEnabled:                  p.GetTlsEnabled(),
		RequireClientMTLS:           p.GetRequireClientMtls(),
		EncryptedServerCert:         p.GetEncryptedServerCert(),
		EncryptedServerKey:          p.GetEncryptedServerKey(),
		EncryptedClientCABundle:     p.GetEncryptedClientCaBundle(),
		EncryptedUpstreamCABundle:   p.GetEncryptedUpstreamCaBundle(),
		EncryptedUpstreamClientCert: p.GetEncryptedUpstreamClientCert(),
		EncryptedUpstreamClientKey:  p.GetEncryptedUpstreamClientKey(),
		ClientCertTTLHours:          p.GetClientCertTtlHours(),
		SNI:                         p.Sni,
		SubjectAltNameTemplate:      p.SubjectAltNameTemplate,
		AllowedDNSNames:             p.GetAllowedDnsNames(),
	}
}

func ownerFromPB(o *bridgepb.ServiceOwner) registry.Owner {
	// The enum is open: 3 (BN254 BLS) and any other integer pass through
	// unchanged, as upstream.
	return registry.Owner{KeyType: registry.KeyType(uint32(o.GetKeyType())), KeyBytes: o.GetKeyBytes()}
}

func notFound(g uint64) error { return status.Errorf(codes.NotFound, "Service %d:0 not found", g) }

func dbError(err error) error { return status.Errorf(codes.Internal, "Database error: %v", err) }

func (s *Server) transportFor(upstream string) registry.Transport {
	if s.cfg.Transport != "" {
		return s.cfg.Transport
	}
	if u, err := url.Parse(upstream); err == nil && u.Scheme == "unix" {
		return registry.TransportUnix
	}
	return registry.TransportTCPLocal
}

// RegisterBlueprintServiceProxy implements the RPC.
func (s *Server) RegisterBlueprintServiceProxy(ctx context.Context, req *bridgepb.RegisterBlueprintServiceProxyRequest) (*emptypb.Empty, error) {
	g := req.GetServiceId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPin(g, false); err != nil {
		return nil, err
	}
	if err := validateTLS(req.GetTlsProfile()); err != nil {
		return nil, err
	}
	upstream := req.GetUpstreamUrl()
	if s.cfg.Upstream != nil {
		u, err := s.cfg.Upstream(ctx, upstream)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "upstream %q: %v", upstream, err)
		}
		upstream = u
	}
	rec := &registry.Record{
		ServiceID:    g,
		APIKeyPrefix: req.GetApiKeyPrefix(),
		UpstreamURL:  upstream,
		TLSProfile:   tlsFromPB(req.GetTlsProfile()),
		Transport:    s.transportFor(req.GetUpstreamUrl()),
		Gateway:      s.cfg.Gateway,
		InstanceID:   s.cfg.InstanceID,
		ViaBridge:    true,
	}
	for _, o := range req.GetOwners() {
		rec.Owners = append(rec.Owners, ownerFromPB(o))
	}
	if s.pinned == nil {
		// First registration on this bridge: never take over another
		// instance's record, whether another bridge's or one left stale by
		// a crash. A record of this bridge's own instance is its own: the
		// fallback route the manager wrote at deploy, or what the service
		// registered through this instance's bridge before a manager
		// restart.
		err := s.createOrTakeOwn(ctx, rec)
		if errors.Is(err, registry.ErrExists) {
			return nil, status.Errorf(codes.AlreadyExists, "Service %d:0 is already registered by another bridge", g)
		}
		if err != nil {
			return nil, dbError(err)
		}
		s.pinned = &g
	} else if err := s.cfg.Registry.Put(ctx, rec); err != nil {
		return nil, dbError(err)
	}
	s.log.Info("bridge: service registered", "service", g, "transport", string(rec.Transport), "owners", len(rec.Owners))
	return &emptypb.Empty{}, nil
}

// errOtherInstance: the existing record belongs to another instance.
var errOtherInstance = errors.New("bridge: record of another instance")

// createOrTakeOwn is the first registration's write: write-if-absent, or,
// when the bridge knows its instance, an atomic overwrite of a record stamped
// with that same instance. Any other existing record is ErrExists.
func (s *Server) createOrTakeOwn(ctx context.Context, rec *registry.Record) error {
	err := s.cfg.Registry.Create(ctx, rec)
	if !errors.Is(err, registry.ErrExists) || s.cfg.InstanceID == "" {
		return err
	}
	err = s.cfg.Registry.Update(ctx, rec.ID(), func(cur *registry.Record) (*registry.Record, error) {
		if cur.InstanceID != s.cfg.InstanceID {
			return nil, errOtherInstance
		}
		return rec.Clone(), nil
	})
	switch {
	case errors.Is(err, errOtherInstance):
		return fmt.Errorf("registry: create %s: %w", rec.ID(), registry.ErrExists)
	case errors.Is(err, registry.ErrNotFound):
		// Removed between the two calls: it is absent now.
		return s.cfg.Registry.Create(ctx, rec)
	}
	return err
}

// UnregisterBlueprintServiceProxy implements the RPC: delete the record and
// clear the pin.
func (s *Server) UnregisterBlueprintServiceProxy(ctx context.Context, req *bridgepb.UnregisterBlueprintServiceProxyRequest) (*emptypb.Empty, error) {
	g := req.GetServiceId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPin(g, true); err != nil {
		return nil, err
	}
	// A record already gone (removed by the operator) is not an error: the
	// caller wants it gone, and the pin is cleared either way.
	if err := s.cfg.Registry.Delete(ctx, registry.ID{Main: g}); err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, dbError(err)
	}
	s.pinned = nil
	s.log.Info("bridge: service unregistered", "service", g)
	return &emptypb.Empty{}, nil
}

// AddOwnerToService implements the RPC (idempotent).
func (s *Server) AddOwnerToService(ctx context.Context, req *bridgepb.AddOwnerToServiceRequest) (*emptypb.Empty, error) {
	g := req.GetServiceId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPin(g, true); err != nil {
		return nil, err
	}
	if req.GetOwnerToAdd() == nil {
		return nil, status.Error(codes.InvalidArgument, "owner_to_add is required")
	}
	return s.ownerChange(ctx, g, func() error {
		return s.cfg.Registry.AddOwner(ctx, registry.ID{Main: g}, ownerFromPB(req.GetOwnerToAdd()))
	})
}

// RemoveOwnerFromService implements the RPC (removing an absent owner is OK).
func (s *Server) RemoveOwnerFromService(ctx context.Context, req *bridgepb.RemoveOwnerFromServiceRequest) (*emptypb.Empty, error) {
	g := req.GetServiceId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPin(g, true); err != nil {
		return nil, err
	}
	if req.GetOwnerToRemove() == nil {
		return nil, status.Error(codes.InvalidArgument, "owner_to_remove is required")
	}
	return s.ownerChange(ctx, g, func() error {
		return s.cfg.Registry.RemoveOwner(ctx, registry.ID{Main: g}, ownerFromPB(req.GetOwnerToRemove()))
	})
}

func (s *Server) ownerChange(_ context.Context, g uint64, fn func() error) (*emptypb.Empty, error) {
	err := fn()
	if errors.Is(err, registry.ErrNotFound) {
		return nil, notFound(g)
	}
	if err != nil {
		return nil, dbError(err)
	}
	return &emptypb.Empty{}, nil
}

// UpdateBlueprintServiceTlsProfile implements the RPC; an absent profile
// turns TLS off.
func (s *Server) UpdateBlueprintServiceTlsProfile(ctx context.Context, req *bridgepb.UpdateBlueprintServiceTlsProfileRequest) (*emptypb.Empty, error) {
	g := req.GetServiceId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPin(g, true); err != nil {
		return nil, err
	}
	if err := validateTLS(req.GetTlsProfile()); err != nil {
		return nil, err
	}
	p := tlsFromPB(req.GetTlsProfile())
	return s.ownerChange(ctx, g, func() error {
		return s.cfg.Registry.Update(ctx, registry.ID{Main: g}, func(r *registry.Record) (*registry.Record, error) {
			r.TLSProfile = p
			return r, nil
		})
	})
}

// Serve serves the bridge on ln until ctx is done or ln fails, then shuts
// down (see Shutdown). It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		// Services hold one long-lived connection; nothing is pushed to
		// them, so keepalive enforcement only needs to tolerate their pings.
		grpc.ConnectionTimeout(10*time.Second),
	)
	bridgepb.RegisterBlueprintManagerBridgeServer(gs, s)
	s.grpcMu.Lock()
	s.grpc = gs
	s.grpcMu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	select {
	case err := <-errc:
		s.shutdownRecord(context.WithoutCancel(ctx))
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("bridge: serve: %w", err)
		}
		return nil
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return s.Shutdown(sctx)
	}
}

// ServeTransport listens on t, serves until ctx is done, then shuts down and
// removes the transport's socket files.
func (s *Server) ServeTransport(ctx context.Context, t Transport) error {
	ln, err := t.Listen(ctx)
	if err != nil {
		return err
	}
	s.log.Info("bridge: listening", "transport", t.Type().String(), "addr", ln.Addr().String())
	err = s.Serve(ctx, ln)
	if cerr := t.Cleanup(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// Detach makes the bridge's coming shutdown keep the pinned record. The
// manager detaches its bridges when it stops while their instances keep
// running: the service stays reachable through the proxy, and the next
// manager's bridge for the same instance takes the record back.
func (s *Server) Detach() {
	s.mu.Lock()
	s.detached = true
	s.mu.Unlock()
}

// Shutdown deletes the pinned record (the proxy then answers 404 for the
// service), stops the gRPC server — gracefully until ctx is done, then hard
// — and clears the pin.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownRecord(ctx)
	s.grpcMu.Lock()
	gs := s.grpc
	s.grpcMu.Unlock()
	if gs == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
		<-done
	}
	return nil
}

func (s *Server) shutdownRecord(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pinned == nil || s.detached {
		return
	}
	g := *s.pinned
	if err := s.cfg.Registry.Delete(ctx, registry.ID{Main: g}); err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.log.Warn("bridge: shutdown: remove service record", "service", g, "err", err)
	}
	s.pinned = nil
}
