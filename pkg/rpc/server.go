package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/chatd/chatd/pkg/chat"
	pb "github.com/chatd/chatd/pkg/rpc/chatdv1"
)

// ServerConfig configures the gRPC listener of the user, room and query roles.
type ServerConfig struct {
	// Addr is the listen address, e.g. ":9090"; ":0" picks a free port.
	Addr string
	// TLS, if set, serves TLS; nil serves plaintext, for a private network.
	TLS *tls.Config
	// ShutdownTimeout bounds the graceful stop after the context ends; calls
	// still running then are cut off. Default 10s.
	ShutdownTimeout time.Duration
	// MaxConnectionAge makes clients reconnect now and then, which makes
	// them resolve DNS again and spread over instances added since.
	// Default 5m.
	MaxConnectionAge time.Duration
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.MaxConnectionAge <= 0 {
		c.MaxConnectionAge = 5 * time.Minute
	}
	return c
}

// Server serves the role services given to NewServer over gRPC, with the
// standard health service.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	names  []string // registered service names, for health

	mu    sync.Mutex
	addr  net.Addr
	ready chan struct{}
}

// NewServer returns a server for the given services; a nil service is not
// registered (its calls answer Unimplemented, which clients report as
// EUNAVAILABLE).
func NewServer(cfg ServerConfig, users chat.UserService, rooms chat.RoomService, query chat.QueryService, log *slog.Logger) *Server {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("component", "grpc"), health: health.NewServer(), ready: make(chan struct{})}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unary),
		// Clients ping every 30s (ClientConfig); the default policy (5 min)
		// would answer those pings by closing the connection.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.ShutdownTimeout,
		}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	if users != nil {
		pb.RegisterUserServiceServer(s.grpc, &userServer{svc: users})
		s.names = append(s.names, pb.UserService_ServiceDesc.ServiceName)
	}
	if rooms != nil {
		pb.RegisterRoomServiceServer(s.grpc, &roomServer{svc: rooms})
		s.names = append(s.names, pb.RoomService_ServiceDesc.ServiceName)
	}
	if query != nil {
		pb.RegisterQueryServiceServer(s.grpc, &queryServer{svc: query})
		s.names = append(s.names, pb.QueryService_ServiceDesc.ServiceName)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	// Until Serve starts, everything reports NOT_SERVING.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, n := range s.names {
		s.health.SetServingStatus(n, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return s
}

// Run listens on cfg.Addr and serves until ctx ends, then stops gracefully.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx ends, then stops gracefully: calls in flight
// get ShutdownTimeout to finish while health reports NOT_SERVING, so load
// balancers and clients move away first.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	s.addr = lis.Addr()
	close(s.ready)
	s.mu.Unlock()

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, n := range s.names {
		s.health.SetServingStatus(n, healthpb.HealthCheckResponse_SERVING)
	}
	s.log.Info("grpc serving", "addr", lis.Addr().String(), "services", s.names)

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		s.health.Shutdown()
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	t := time.NewTimer(s.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.log.Warn("grpc graceful stop timed out; closing connections")
		s.grpc.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc serve: %w", err)
	}
	s.log.Info("grpc stopped")
	return nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listening address, nil before Run or Serve has started.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// unary is the one place where service results become wire results:
// domain errors become statuses, errors the client will only see as
// "internal error" are logged here (the edge where their details are known),
// and a panic in one request cannot kill the process and every other
// caller's requests with it.
func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("grpc handler panic", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, toStatus(ctx, chat.Errorf(chat.EINTERNAL, "internal error"))
		}
	}()
	resp, err = handler(ctx, req)
	if err != nil {
		if chat.ErrorCode(err) == chat.EINTERNAL && ctx.Err() == nil {
			s.log.Error("grpc call failed", "method", info.FullMethod, "err", err)
		}
		return nil, toStatus(ctx, err)
	}
	return resp, nil
}
