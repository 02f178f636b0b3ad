// Package natsbus runs the NATS server embedded in chatd and connects the
// roles to it (or to an external NATS cluster). NATS is the fanout bus in
// every mode; JetStream on the same server is the embedded message log.
package natsbus

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// ServerName names this server in a cluster; JetStream clustering
	// requires a stable, unique name per node. Default: nats-server's own.
	ServerName string
	// StoreDir is where JetStream keeps its files (the data dir's "nats").
	StoreDir string
	// ListenAddr ("host:port") opens a TCP client port, for external
	// clients or separate chatd processes. Empty: in-process only.
	ListenAddr string
	// ClusterName, ClusterListen ("host:port") and Routes (nats-route://
	// URLs or host:port of the other nodes) join the embedded servers of
	// several chatd nodes into one NATS cluster. Empty ClusterListen: no
	// cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// MaxStore bounds JetStream's disk use in bytes; 0: no bound.
	MaxStore int64
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default 10 s.
	ReadyTimeout time.Duration
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
	log *slog.Logger
}

// StartEmbedded starts a NATS server with JetStream in this process and
// waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, chat.Errorf(chat.EINVALID, "in nats.store_dir: must be set")
	}
	opts := &server.Options{
		ServerName:        cfg.ServerName,
		JetStream:         true,
		StoreDir:          cfg.StoreDir,
		JetStreamMaxStore: cfg.MaxStore,
		// chatd owns signal handling; the server must not install its own.
		NoSigs: true,
	}
	if cfg.ListenAddr == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.ListenAddr)
		if err != nil {
			return nil, chat.Errorf(chat.EINVALID, "in nats.listen: %v", err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.ClusterListen != "" {
		host, port, err := splitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, chat.Errorf(chat.EINVALID, "in nats.cluster_listen: %v", err)
		}
		if cfg.ClusterName == "" {
			return nil, chat.Errorf(chat.EINVALID, "in nats.cluster_name: must be set with cluster_listen")
		}
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
		for _, r := range cfg.Routes {
			u, err := routeURL(r)
			if err != nil {
				return nil, chat.Errorf(chat.EINVALID, "in nats.routes: %v", err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	srv.SetLoggerV2(&slogAdapter{log: log}, false, false, false)
	srv.Start()
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("nats server not ready in time")
	}
	return &Embedded{srv: srv, log: log}, nil
}

// Server returns the underlying server, for tests and monitoring.
func (e *Embedded) Server() *server.Server { return e.srv }

// ClientURL returns the TCP client URL, or "" if no port is open.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// ClusterAddr returns the address the cluster port listens on, or nil.
func (e *Embedded) ClusterAddr() net.Addr { return e.srv.ClusterAddr() }

// Shutdown stops the server; connections are closed.
func (e *Embedded) Shutdown() { e.srv.Shutdown() }

// WaitForShutdown blocks until the server has shut down.
func (e *Embedded) WaitForShutdown() { e.srv.WaitForShutdown() }

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q has an invalid port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func routeURL(s string) (*url.URL, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		s = "nats-route://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%q is not a route URL", s)
	}
	return u, nil
}

// slogAdapter makes nats-server log through slog.
type slogAdapter struct{ log *slog.Logger }

// Noticef logs at debug: nats-server's notices are its start-up banner and
// routine state changes, which would drown chatd's own start-up line.
func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }

// ConnectConfig says where to connect.
type ConnectConfig struct {
	// URLs of an external NATS cluster, used when Embedded is nil.
	URLs []string
	// Embedded, if set, is connected to in process (no TCP).
	Embedded *Embedded
	// Name identifies the connection in server monitoring.
	Name string
	// External servers only. TLS, if set, is required of every server
	// (a tls:// URL alone uses the system's roots); CredsFile is a user
	// credentials file (JWT and NKey). A user and password or a token go
	// in the URLs.
	TLS       *tls.Config
	CredsFile string
}

// Connect opens a NATS connection. To an external cluster it reconnects
// forever: a chat node without its bus is useless, and giving up would
// leave roles holding a dead connection.
func Connect(ctx context.Context, cfg ConnectConfig, log *slog.Logger) (*nats.Conn, error) {
	log = log.With("conn", cfg.Name)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	servers := ""
	switch {
	case cfg.Embedded != nil:
		opts = append(opts, nats.InProcessServer(cfg.Embedded.srv))
	case len(cfg.URLs) > 0:
		for i, u := range cfg.URLs {
			if i > 0 {
				servers += ","
			}
			servers += u
		}
		// Starting before the cluster is up is normal in a deployment
		// (containers start in any order): keep trying.
		opts = append(opts, nats.RetryOnFailedConnect(true))
		if cfg.TLS != nil {
			opts = append(opts, nats.Secure(cfg.TLS.Clone()))
		}
		if cfg.CredsFile != "" {
			// Read at every (re)connect; a missing file is a mistake to
			// report now rather than retry forever.
			if _, err := os.Stat(cfg.CredsFile); err != nil {
				return nil, fmt.Errorf("in nats.creds_file: %w", err)
			}
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
	default:
		return nil, chat.Errorf(chat.EINVALID, "in nats.urls: no NATS URL and no embedded server")
	}
	nc, err := nats.Connect(servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	if cfg.Embedded == nil {
		// RetryOnFailedConnect returns at once; wait for the first
		// connection so callers can use it, but not past ctx.
		for !nc.IsConnected() {
			select {
			case <-ctx.Done():
				// Say why the attempts failed (a refused certificate or
				// password), not only that time ran out.
				last := nc.LastError()
				nc.Close()
				if last != nil {
					return nil, fmt.Errorf("connect nats: %w (last attempt: %v)", ctx.Err(), last)
				}
				return nil, fmt.Errorf("connect nats: %w", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nc, nil
}

// Events publishes control events for every gateway on the NATS bus.
type Events struct{ nc *nats.Conn }

var _ chat.EventPublisher = (*Events)(nil)

// NewEvents returns a publisher of control events on nc.
func NewEvents(nc *nats.Conn) *Events { return &Events{nc: nc} }

// PublishControl publishes e on chat.SubjectControl.
func (e *Events) PublishControl(ev chat.ControlEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode control event: %w", err)
	}
	if err := e.nc.Publish(chat.SubjectControl, b); err != nil {
		return fmt.Errorf("publish control event: %w", err)
	}
	return nil
}
