// Package app is chatd's composition root: it turns a Config into running
// roles, wiring each to the backends the config names and to the other
// roles, in process or over gRPC. Main has Open, Run and Close, so a test can
// run the whole program on port 0 in a temp dir.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/config"
	"github.com/chatd/chatd/pkg/elastic"
	"github.com/chatd/chatd/pkg/gateway"
	"github.com/chatd/chatd/pkg/httpapi"
	"github.com/chatd/chatd/pkg/ingest"
	"github.com/chatd/chatd/pkg/jetstream"
	"github.com/chatd/chatd/pkg/kafka"
	"github.com/chatd/chatd/pkg/metrics"
	"github.com/chatd/chatd/pkg/natsbus"
	"github.com/chatd/chatd/pkg/post"
	"github.com/chatd/chatd/pkg/postgres"
	"github.com/chatd/chatd/pkg/prio"
	"github.com/chatd/chatd/pkg/query"
	"github.com/chatd/chatd/pkg/redis"
	"github.com/chatd/chatd/pkg/room"
	"github.com/chatd/chatd/pkg/rpc"
	"github.com/chatd/chatd/pkg/scylla"
	"github.com/chatd/chatd/pkg/sqlite"
	"github.com/chatd/chatd/pkg/user"
	"github.com/chatd/chatd/pkg/worker"
	"github.com/chatd/chatd/web"
)

// Main is one chatd process.
type Main struct {
	Config config.Config
	Log    *slog.Logger

	embedded *natsbus.Embedded
	nc       *nats.Conn
	// roomBus carries room frames from ingest and gateways: in memory when
	// no other process can reach the embedded NATS server, NATS otherwise.
	roomBus chat.RoomBus
	cache   *redis.Cache

	users chat.UserService
	rooms chat.RoomService
	query chat.QueryService
	// ingest is the ingest role when this process runs it: a local
	// gateway then hands it sends directly instead of over NATS.
	ingest *ingest.Server

	runners []runner
	closers []func() error // run in reverse order by Close
	checks  []check        // readiness

	listener net.Listener
	// metricsListener serves http.metrics_addr, if set.
	metricsListener net.Listener
	server          *http.Server
	started         time.Time
	metrics         *metrics.Metrics

	closeOnce sync.Once
}

type runner struct {
	name string
	run  func(ctx context.Context) error
}

type check struct {
	name string
	fn   func(ctx context.Context) error
}

// New returns an unopened Main.
func New(cfg config.Config, log *slog.Logger) *Main {
	return &Main{Config: cfg, Log: log, metrics: metrics.New()}
}

// Metrics returns the process's metrics (served at /metrics).
func (m *Main) Metrics() *metrics.Metrics { return m.metrics }

// instrument wraps a sink's write with its batch histogram and the backend
// error counter, so the workers stay free of metrics code.
func (m *Main) instrument(sink, backend string, write func(context.Context, []chat.Message) error) func(context.Context, []chat.Message) error {
	return func(ctx context.Context, msgs []chat.Message) error {
		start := time.Now()
		err := write(ctx, msgs)
		if err != nil {
			m.metrics.BackendError(backend)
			return err
		}
		m.metrics.ObserveBatch(sink, len(msgs), time.Since(start))
		return nil
	}
}

func (m *Main) onClose(f func() error) { m.closers = append(m.closers, f) }

func (m *Main) addRunner(name string, run func(ctx context.Context) error) {
	m.runners = append(m.runners, runner{name, run})
}

func (m *Main) addCheck(name string, fn func(ctx context.Context) error) {
	m.checks = append(m.checks, check{name, fn})
}

// Addr returns the HTTP listener's address (after Open), e.g. for tests
// that listen on port 0.
func (m *Main) Addr() string {
	if m.listener == nil {
		return ""
	}
	return m.listener.Addr().String()
}

// MetricsAddr is the address http.metrics_addr listens on, "" if unset.
func (m *Main) MetricsAddr() string {
	if m.metricsListener == nil {
		return ""
	}
	return m.metricsListener.Addr().String()
}

// Open builds every configured role and binds the listeners. On error,
// whatever was opened is closed.
func (m *Main) Open(ctx context.Context) (err error) {
	m.started = time.Now()
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	cfg := m.Config
	prio.SetBackgroundNice(cfg.Store.BackgroundNice)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := m.openBus(ctx); err != nil {
		return err
	}
	c, err := redis.Open(ctx, redis.Config{URL: cfg.Redis.URL, Prefix: cfg.Redis.Prefix, RecentPerRoom: cfg.Redis.RecentPerRoom}, m.Log.With("component", "redis"))
	if err != nil {
		return fmt.Errorf("open redis: %w", err)
	}
	m.cache = c
	m.onClose(c.Close)
	m.addCheck("redis", c.Ping)

	ids, err := chat.NewIDGen(cfg.NodeID)
	if err != nil {
		return fmt.Errorf("in node_id: %w", err)
	}
	events := natsbus.NewEvents(m.nc)

	if err := m.openDirectory(ctx, ids, events); err != nil {
		return err
	}

	var log chat.Log
	if cfg.Has("ingest") || cfg.Has("store") || cfg.Has("index") {
		if log, err = m.openLog(ctx); err != nil {
			return err
		}
	}
	var store chat.MessageStore
	if cfg.Has("store") || cfg.Has("query") {
		if store, err = m.openStore(ctx); err != nil {
			return err
		}
	}
	var index chat.SearchIndex
	if cfg.Has("index") || cfg.Has("query") {
		if index, err = m.openIndex(ctx); err != nil {
			return err
		}
	}
	if cfg.Has("query") {
		m.query = query.New(m.rooms, store, index, m.cache, m.Log.With("role", "query"))
	} else if cfg.Has("gateway") {
		cl, err := m.dial(ctx, "grpc.query_addr", cfg.GRPC.QueryAddr)
		if err != nil {
			return err
		}
		m.query = cl.Query()
	}
	if cfg.Has("ingest") && cfg.Redis.URL == "" {
		if err := m.restoreCache(ctx, log); err != nil {
			return err
		}
	}
	// The sinks of this process: ingest paces sends to what they keep up
	// with (ingest.max_backlog).
	var sinks []*worker.Sink
	if cfg.Has("store") {
		s := worker.NewSink("store", "store", log, m.instrument("store", cfg.Store.Backend, store.WriteMessages), m.Log)
		m.addRunner("store", s.Run)
		m.metrics.Sink("store", func() metrics.SinkStats { return metrics.SinkStats(s.Stats()) })
		m.metrics.LogLag("store", s.Lag)
		sinks = append(sinks, s)
	}
	if cfg.Has("index") {
		s := worker.NewSink("index", "index", log, m.instrument("index", cfg.Search.Backend, index.IndexMessages), m.Log)
		m.addRunner("index", s.Run)
		m.metrics.Sink("index", func() metrics.SinkStats { return metrics.SinkStats(s.Stats()) })
		m.metrics.LogLag("index", s.Lag)
		sinks = append(sinks, s)
	}
	if cfg.Has("ingest") {
		deps := ingest.Deps{NC: m.nc, Bus: m.roomBus, Log: log, IDs: ids, Nonces: m.cache, Recent: m.cache}
		if len(sinks) > 0 {
			deps.Backlog = func() time.Duration {
				now := time.Now()
				var b time.Duration
				for _, s := range sinks {
					b = max(b, s.Behind(now))
				}
				return b
			}
		}
		srv := ingest.NewServer(ingest.Config{Buffer: cfg.Ingest.Buffer, MaxBatch: cfg.Ingest.MaxBatch, NonceTTL: cfg.Ingest.NonceTTL,
			MaxBacklog: cfg.Ingest.MaxBacklog, Linger: cfg.Ingest.Linger}, deps, m.Log)
		m.ingest = srv
		m.addRunner("ingest", srv.Run)
		m.metrics.Ingest(func() metrics.IngestStats { return metrics.IngestStats(srv.Stats()) })
	}
	if cfg.GRPC.Addr != "" {
		st, err := cfg.GRPC.TLS.Server()
		if err != nil {
			return fmt.Errorf("in grpc.tls: %w", err)
		}
		switch {
		case loopback(cfg.GRPC.Addr):
		case st == nil:
			m.Log.Warn("grpc.addr serves the user, room and query roles without TLS or authentication: anyone who reaches it can act as any user; keep it on a private network or set [grpc.tls]", "addr", cfg.GRPC.Addr)
		case st.ClientAuth != tls.RequireAndVerifyClientCert:
			m.Log.Warn("grpc.addr accepts clients without a certificate: anyone who reaches it can act as any user; set grpc.tls.ca_file to require one", "addr", cfg.GRPC.Addr)
		}
		srv := rpc.NewServer(rpc.ServerConfig{Addr: cfg.GRPC.Addr, TLS: st}, localOrNil(cfg.Has("user"), m.users), localOrNil(cfg.Has("room"), m.rooms), localOrNil(cfg.Has("query"), m.query), m.Log.With("component", "grpc"))
		m.addRunner("grpc", srv.Run)
	}
	if err := m.openDebug(); err != nil {
		return err
	}
	if err := m.openMetrics(); err != nil {
		return err
	}
	return m.openHTTP(ctx)
}

// BackgroundThreads is how many threads of a process with cfg may run
// background work at lowered priority at once (see prio.EnsureProcs): the
// store and index sinks, and one SQLite checkpoint. 0 when
// store.background_nice is 0.
func BackgroundThreads(cfg config.Config) int {
	if cfg.Store.BackgroundNice <= 0 {
		return 0
	}
	n := 1
	for _, role := range []string{"store", "index"} {
		if cfg.Has(role) {
			n++
		}
	}
	return n
}

// localOrNil passes a service to the gRPC server only if this process runs
// it, so a process never re-exports a remote role.
func localOrNil[T any](local bool, s T) T {
	var zero T
	if !local {
		return zero
	}
	return s
}

func (m *Main) openBus(ctx context.Context) error {
	cfg := m.Config
	cc := natsbus.ConnectConfig{URLs: cfg.NATS.URLs, Name: "chatd", CredsFile: cfg.NATS.CredsFile}
	var err error
	if cc.TLS, err = clientTLS("nats.tls", cfg.NATS.TLS); err != nil {
		return err
	}
	if len(cfg.NATS.URLs) == 0 {
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{
			StoreDir:      filepath.Join(cfg.DataDir, "nats"),
			ListenAddr:    cfg.NATS.Listen,
			ClusterName:   cfg.NATS.ClusterName,
			ClusterListen: cfg.NATS.ClusterListen,
			Routes:        cfg.NATS.Routes,
		}, m.Log.With("component", "nats"))
		if err != nil {
			return fmt.Errorf("start embedded nats: %w", err)
		}
		m.embedded = e
		m.onClose(func() error { e.Shutdown(); e.WaitForShutdown(); return nil })
		cc.Embedded = e
	}
	nc, err := natsbus.Connect(ctx, cc, m.Log.With("component", "nats"))
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	m.nc = nc
	m.onClose(func() error { return nc.Drain() })
	if cc.Embedded != nil && cfg.NATS.Listen == "" && cfg.NATS.ClusterListen == "" {
		local := natsbus.NewLocalRooms(0, m.Log.With("component", "room-bus"))
		m.metrics.RoomBusDropped(local.Dropped)
		m.roomBus = local
	} else {
		m.roomBus = natsbus.NewRooms(nc)
	}
	m.addCheck("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	return nil
}

// openDirectory sets up the user and room roles, local or remote.
func (m *Main) openDirectory(ctx context.Context, ids *chat.IDGen, events chat.EventPublisher) error {
	cfg := m.Config
	var accounts chat.AccountStore
	var rooms chat.RoomStore
	if cfg.Has("user") || cfg.Has("room") {
		switch cfg.Database.Backend {
		case "postgres":
			db, err := postgres.Open(ctx, cfg.Database.PostgresDSN, m.Log.With("component", "postgres"))
			if err != nil {
				return fmt.Errorf("open postgres: %w", err)
			}
			m.onClose(func() error { db.Close(); return nil })
			if err := db.Migrate(ctx); err != nil {
				return fmt.Errorf("migrate postgres: %w", err)
			}
			m.addCheck("postgres", func(ctx context.Context) error { return db.Pool().Ping(ctx) })
			accounts, rooms = db, db
		default:
			db, err := sqlite.OpenAccounts(ctx, filepath.Join(cfg.DataDir, "chatd.db"), m.Log.With("component", "sqlite"))
			if err != nil {
				return fmt.Errorf("open accounts database: %w", err)
			}
			m.onClose(db.Close)
			accounts, rooms = db, db
		}
	}
	needUsers := cfg.Has("user") || cfg.Has("room") || cfg.Has("gateway")
	if cfg.Has("user") {
		svc := user.New(user.Config{
			SessionTTL: cfg.Sessions.TTL,
			LoginLimit: redis.Limit{Rate: cfg.Limits.LoginRate, Burst: cfg.Limits.LoginRate, Period: time.Minute},
		}, accounts, m.cache, events, ids, m.Log.With("role", "user"))
		m.users = svc
		m.addRunner("user", svc.Run)
	} else if needUsers {
		cl, err := m.dial(ctx, "grpc.user_addr", cfg.GRPC.UserAddr)
		if err != nil {
			return err
		}
		m.users = cl.Users()
	}
	needRooms := cfg.Has("room") || cfg.Has("gateway") || cfg.Has("query")
	if cfg.Has("room") {
		m.rooms = room.New(rooms, m.users, events, ids, m.Log.With("role", "room"))
	} else if needRooms {
		cl, err := m.dial(ctx, "grpc.room_addr", cfg.GRPC.RoomAddr)
		if err != nil {
			return err
		}
		m.rooms = cl.Rooms()
	}
	if m.rooms != nil {
		// Every send checks access: answer grants from memory, evicted by
		// the room role's control events.
		ac := room.NewAccessCache(m.rooms, m.nc, 0, m.Log.With("component", "access-cache"))
		m.rooms = ac
		m.addRunner("access-cache", ac.Run)
	}
	return nil
}

func (m *Main) dial(ctx context.Context, key, addr string) (*rpc.Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("in %s: must be set: the role is not run by this process (roles = %s)", key, strings.Join(m.Config.Roles, ","))
	}
	ct, err := clientTLS("grpc.tls", m.Config.GRPC.TLS)
	if err != nil {
		return nil, err
	}
	cl, err := rpc.Dial(ctx, addr, rpc.ClientConfig{TLS: ct}, m.Log.With("component", "grpc-client", "peer", addr))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", key, err)
	}
	m.onClose(cl.Close)
	return cl, nil
}

func (m *Main) openLog(ctx context.Context) (chat.Log, error) {
	cfg := m.Config
	switch cfg.EventLog.Backend {
	case "kafka":
		kc, err := kafkaConfig(cfg)
		if err != nil {
			return nil, err
		}
		l, err := kafka.NewLog(ctx, kc, m.Log.With("component", "kafka"))
		if err != nil {
			return nil, fmt.Errorf("open kafka log: %w", err)
		}
		m.onClose(l.Close)
		return l, nil
	default:
		l, err := jetstream.NewLog(ctx, m.nc, jetstream.LogConfig{
			MaxAge: cfg.EventLog.MaxAge,
			// A batch held by a process that died is redelivered after
			// AckWait; Consume sends in-progress acks while it works, so a
			// short wait only speeds up recovery after a crash.
			AckWait: 5 * time.Second,
		}, m.Log.With("component", "jetstream"))
		if err != nil {
			return nil, fmt.Errorf("open jetstream log: %w", err)
		}
		m.metrics.Log("jetstream", func() metrics.LogStats { return metrics.LogStats(l.Stats()) })
		return l, nil
	}
}

// restoreCache refills the embedded cache, which lives in memory, from the
// log's tail: the nonces claimed within the nonce TTL, so a client that
// retries a send across a restart gets its first message back instead of a
// second copy, and the rooms' recent windows. A real Redis keeps both
// itself.
func (m *Main) restoreCache(ctx context.Context, log chat.Log) error {
	r, ok := log.(interface {
		Replay(context.Context, time.Time, func([]chat.Message) error) error
	})
	if !ok {
		return nil
	}
	start := time.Now()
	ttl := m.Config.Ingest.NonceTTL
	n := 0
	err := r.Replay(ctx, start.Add(-ttl), func(msgs []chat.Message) error {
		n += len(msgs)
		if _, err := m.cache.ClaimNonces(ctx, msgs, ttl); err != nil {
			return err
		}
		return m.cache.AddRecent(ctx, msgs)
	})
	if err != nil {
		return fmt.Errorf("restore cache from the log: %w", err)
	}
	if n > 0 {
		m.Log.Info("cache restored from the log", "messages", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func (m *Main) openStore(ctx context.Context) (chat.MessageStore, error) {
	cfg := m.Config
	switch cfg.Store.Backend {
	case "scylla":
		sc, err := scyllaConfig(cfg)
		if err != nil {
			return nil, err
		}
		s, err := scylla.Open(ctx, sc, m.Log.With("component", "scylla"))
		if err != nil {
			return nil, fmt.Errorf("open scylla: %w", err)
		}
		m.onClose(func() error { s.Close(); return nil })
		if err := s.Migrate(ctx); err != nil {
			return nil, fmt.Errorf("migrate scylla: %w", err)
		}
		return s, nil
	default:
		s, err := sqlite.OpenMessages(ctx, filepath.Join(cfg.DataDir, "messages.db"), m.Log.With("component", "sqlite"))
		if err != nil {
			return nil, fmt.Errorf("open message store: %w", err)
		}
		m.onClose(s.Close)
		return s, nil
	}
}

func (m *Main) openIndex(ctx context.Context) (chat.SearchIndex, error) {
	cfg := m.Config
	switch cfg.Search.Backend {
	case "elasticsearch":
		ec, err := elasticConfig(cfg)
		if err != nil {
			return nil, err
		}
		ix, err := elastic.Open(ctx, ec, m.Log.With("component", "elasticsearch"))
		if err != nil {
			return nil, fmt.Errorf("open elasticsearch: %w", err)
		}
		if err := ix.Migrate(ctx); err != nil {
			return nil, fmt.Errorf("migrate elasticsearch: %w", err)
		}
		return ix, nil
	default:
		s, err := sqlite.OpenSearch(ctx, filepath.Join(cfg.DataDir, "search.db"), m.Log.With("component", "sqlite"))
		if err != nil {
			return nil, fmt.Errorf("open search index: %w", err)
		}
		m.onClose(s.Close)
		return s, nil
	}
}

// loopback reports whether addr (host:port) listens on a loopback address
// only; ":9090" and "0.0.0.0:9090" listen on every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clientTLS is the TLS configuration for dialling of t, the settings at
// key; nil when off.
func clientTLS(key string, t config.TLS) (*tls.Config, error) {
	c, err := t.Client()
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", key, err)
	}
	return c, nil
}

func kafkaConfig(cfg config.Config) (kafka.Config, error) {
	k := cfg.Kafka
	mech, err := kafka.Mechanism(k.SASL.Mechanism, k.SASL.Username, k.SASL.Password)
	if err != nil {
		return kafka.Config{}, fmt.Errorf("in kafka.sasl.mechanism: %w", err)
	}
	t, err := clientTLS("kafka.tls", k.TLS)
	if err != nil {
		return kafka.Config{}, err
	}
	return kafka.Config{Brokers: k.Brokers, Topic: k.Topic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor, TLS: t, SASL: mech}, nil
}

func scyllaConfig(cfg config.Config) (scylla.Config, error) {
	s := cfg.Scylla
	t, err := clientTLS("scylla.tls", s.TLS)
	if err != nil {
		return scylla.Config{}, err
	}
	return scylla.Config{Hosts: s.Hosts, Keyspace: s.Keyspace, Replication: s.Replication, Consistency: s.Consistency, BucketSpan: s.BucketSpan,
		Username: s.Username, Password: s.Password, TLS: t}, nil
}

func elasticConfig(cfg config.Config) (elastic.Config, error) {
	e := cfg.Elasticsearch
	t, err := clientTLS("elasticsearch.tls", e.TLS)
	if err != nil {
		return elastic.Config{}, err
	}
	return elastic.Config{Addresses: e.Addresses, Username: e.Username, Password: e.Password, Index: e.Index, Flavor: e.Flavor,
		BulkMaxDocs: e.BulkMaxDocs, BulkMaxBytes: e.BulkMaxBytes, FlushInterval: e.FlushInterval, TLS: t}, nil
}

// originHosts turns configured origins (https://chat.example.com) into the
// host patterns the WebSocket library matches.
func originHosts(origins []string) []string {
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		if _, h, ok := strings.Cut(o, "://"); ok {
			o = h
		}
		out = append(out, strings.TrimSuffix(o, "/"))
	}
	return out
}

func (m *Main) openHTTP(ctx context.Context) error {
	cfg := m.Config
	mux := http.NewServeMux()
	if cfg.HTTP.MetricsAddr == "" {
		m.handleProbes(mux)
	} else {
		// /metrics is on its own listener (openMetrics); load balancers
		// still probe the public one.
		m.handleHealth(mux)
	}
	if cfg.Has("gateway") {
		auth := user.NewAuthCache(m.users, m.nc, cfg.Sessions.CacheTTL, m.Log.With("component", "auth"))
		m.addRunner("auth-cache", auth.Run)
		limit := redis.Limit{Rate: cfg.Limits.SendRate, Burst: cfg.Limits.SendBurst, Period: cfg.Limits.SendPeriod}
		if limit.Burst < limit.Rate {
			limit.Burst = limit.Rate
		}
		var sender chat.Sender = ingest.NewClient(m.nc, cfg.Ingest.Timeout)
		if m.ingest != nil {
			sender = m.ingest.Local(cfg.Ingest.Timeout)
		}
		poster := post.New(m.rooms, m.cache, limit, sender)
		poster.Observe(m.metrics.ObserveAck, func() { m.metrics.RateLimited("send") })
		gw := gateway.New(gateway.Config{
			MaxFrameBytes:   cfg.Gateway.MaxFrameBytes,
			SendQueue:       cfg.Gateway.SendQueue,
			PingInterval:    cfg.Gateway.PingInterval,
			WriteTimeout:    cfg.Gateway.WriteTimeout,
			MaxConnsPerUser: cfg.Gateway.MaxConnsPerUser,
			AllowedOrigins:  originHosts(cfg.HTTP.AllowedOrigins),
			MaxBadFrames:    cfg.Gateway.MaxBadFrames,
			TypingInterval:  cfg.Gateway.TypingInterval,
			ShedAfter:       cfg.Gateway.ShedAfter,
		}, gateway.Deps{Users: auth, Rooms: m.rooms, Query: m.query, Poster: poster, NC: m.nc, Bus: m.roomBus}, m.Log)
		gw.Register(mux)
		m.addRunner("gateway", gw.Run)
		m.metrics.Gateway(func() metrics.GatewayStats { return metrics.GatewayStats(gw.Stats()) })
		api := httpapi.New(httpapi.Config{MaxBodyBytes: cfg.HTTP.MaxBodyBytes, AllowedOrigins: cfg.HTTP.AllowedOrigins, SecureCookies: cfg.HTTP.SecureCookies},
			httpapi.Deps{Users: auth, Rooms: m.rooms, Query: m.query, Poster: poster}, m.Log)
		api.Register(mux)
		mux.Handle("/", web.Handler())
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("in http.addr: listen: %w", err)
	}
	m.listener = ln
	m.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	return nil
}

// handleHealth adds /healthz and /readyz to mux.
func (m *Main) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", m.serveReady)
}

// handleProbes adds /healthz, /readyz and /metrics to mux.
func (m *Main) handleProbes(mux *http.ServeMux) {
	m.handleHealth(mux)
	mux.Handle("GET /metrics", m.metrics.Handler())
}

func (m *Main) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{}
	ok := true
	for _, c := range m.checks {
		if err := c.fn(ctx); err != nil {
			ok = false
			status[c.name] = "down"
			m.Log.Warn("readiness check failed", "check", c.name, "err", err)
		} else {
			status[c.name] = "ok"
		}
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "%s\n", mustJSON(map[string]any{"ready": ok, "checks": status}))
}

// Run serves until ctx ends, then shuts down: the HTTP listener stops
// accepting, the roles drain (the gateway closes sockets, ingest answers
// what it has queued, the workers finish their batch), bounded by
// http.shutdown_timeout.
func (m *Main) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range m.runners {
		g.Go(func() error {
			if err := r.run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		err := m.server.Serve(m.listener)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), m.Config.HTTP.ShutdownTimeout)
		defer cancel()
		// Hijacked WebSocket connections are not tracked by Shutdown; the
		// gateway closes those when its context ends.
		_ = m.server.Shutdown(sctx)
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done:
			return err
		case <-time.After(m.Config.HTTP.ShutdownTimeout + time.Second):
			return errors.New("shutdown timed out")
		}
	}
}

// Close releases everything Open acquired, in reverse order.
func (m *Main) Close() error {
	var errs []error
	m.closeOnce.Do(func() {
		if m.listener != nil && m.server == nil {
			errs = append(errs, m.listener.Close())
		}
		for i := len(m.closers) - 1; i >= 0; i-- {
			if err := m.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// Summary describes what this process runs, for the start-up log line.
func (m *Main) Summary() []any {
	cfg := m.Config
	natsDesc := "embedded"
	if len(cfg.NATS.URLs) > 0 {
		natsDesc = strings.Join(cfg.NATS.URLs, ",")
	}
	redisDesc := "embedded"
	if cfg.Redis.URL != "" {
		redisDesc = "external"
	}
	return []any{
		"roles", strings.Join(cfg.Roles, ","),
		"http_addr", m.Addr(),
		"data_dir", cfg.DataDir,
		"nats", natsDesc,
		"eventlog", cfg.EventLog.Backend,
		"database", cfg.Database.Backend,
		"store", cfg.Store.Backend,
		"search", cfg.Search.Backend,
		"redis", redisDesc,
		"grpc_addr", cfg.GRPC.Addr,
		"startup", time.Since(m.started).Round(time.Millisecond).String(),
	}
}
