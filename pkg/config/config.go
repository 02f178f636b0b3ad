// Package config is chatd's one configuration struct: defaults in code,
// overridden by the TOML file, then CHATD_* environment variables, then
// command-line settings. Unknown keys and invalid values stop start-up with
// an error that names the key.
package config

import (
	"fmt"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
)

// Roles are the seven services chatd can run.
var Roles = []string{"user", "room", "gateway", "ingest", "store", "index", "query"}

// Config is every setting. The documented example with the same defaults is
// chatd.toml at the repository root (printed by `chatd config default`).
type Config struct {
	DataDir string   `koanf:"data_dir"` // everything the embedded backends write
	Roles   []string `koanf:"roles"`    // roles this process runs
	NodeID  int      `koanf:"node_id"`  // 0..1023, unique per process that runs user, room or ingest

	Log           Log           `koanf:"log"`
	HTTP          HTTP          `koanf:"http"`
	Gateway       Gateway       `koanf:"gateway"`
	Limits        Limits        `koanf:"limits"`
	Sessions      Sessions      `koanf:"sessions"`
	Ingest        Ingest        `koanf:"ingest"`
	NATS          NATS          `koanf:"nats"`
	EventLog      EventLog      `koanf:"eventlog"`
	Kafka         Kafka         `koanf:"kafka"`
	Database      Database      `koanf:"database"`
	Store         Store         `koanf:"store"`
	Scylla        Scylla        `koanf:"scylla"`
	Search        Search        `koanf:"search"`
	Elasticsearch Elasticsearch `koanf:"elasticsearch"`
	Redis         Redis         `koanf:"redis"`
	GRPC          GRPC          `koanf:"grpc"`
	Debug         Debug         `koanf:"debug"`
}

// Debug holds operator diagnostics, off by default.
type Debug struct {
	// PprofAddr serves net/http/pprof on its own listener (keep it on
	// loopback or a private network); empty: off.
	PprofAddr string `koanf:"pprof_addr"`
}

// Log is the process log.
type Log struct {
	Level  string `koanf:"level"`  // debug, info, warn, error
	Format string `koanf:"format"` // auto (text on a terminal, else JSON), text, json
}

// HTTP is the one public listener (REST, WebSocket, web UI).
type HTTP struct {
	Addr            string        `koanf:"addr"`
	AllowedOrigins  []string      `koanf:"allowed_origins"` // extra origins allowed for WebSocket and CORS
	MaxBodyBytes    int64         `koanf:"max_body_bytes"`
	SecureCookies   bool          `koanf:"secure_cookies"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// MetricsAddr serves /metrics (and /healthz, /readyz) on a listener of
	// its own and takes /metrics off addr; empty: /metrics on addr.
	MetricsAddr string `koanf:"metrics_addr"`
}

// Gateway is the WebSocket gateway.
type Gateway struct {
	MaxFrameBytes   int64         `koanf:"max_frame_bytes"`
	SendQueue       int           `koanf:"send_queue"`
	PingInterval    time.Duration `koanf:"ping_interval"`
	WriteTimeout    time.Duration `koanf:"write_timeout"`
	MaxConnsPerUser int           `koanf:"max_conns_per_user"`
	MaxBadFrames    int           `koanf:"max_bad_frames"`
	TypingInterval  time.Duration `koanf:"typing_interval"`
	ShedAfter       time.Duration `koanf:"shed_after"`
}

// Limits are per-user rate limits; a rate of 0 turns one off.
type Limits struct {
	SendRate   int           `koanf:"send_rate"`   // messages per send_period
	SendBurst  int           `koanf:"send_burst"`  // extra messages allowed at once
	SendPeriod time.Duration `koanf:"send_period"` // window of send_rate
	LoginRate  int           `koanf:"login_rate"`  // login attempts per username per minute
}

// Sessions are logins.
type Sessions struct {
	TTL      time.Duration `koanf:"ttl"`
	CacheTTL time.Duration `koanf:"cache_ttl"` // how long a node trusts a session without re-checking
}

// Ingest is the NATS-to-log bridge.
type Ingest struct {
	Buffer   int           `koanf:"buffer"`    // queued sends before answering unavailable
	MaxBatch int           `koanf:"max_batch"` // sends appended to the log at once
	Timeout  time.Duration `koanf:"timeout"`   // how long a gateway waits for the durable ack
	NonceTTL time.Duration `koanf:"nonce_ttl"` // how long a client nonce is remembered
	// MaxBacklog paces sends while this process's store or index is
	// further behind the log than this; 0 turns pacing off.
	MaxBacklog time.Duration `koanf:"max_backlog"`
	// Linger: how long a batch waits for more sends while an earlier one
	// is being made durable; 0 turns it off.
	Linger time.Duration `koanf:"linger"`
}

// NATS is the fanout bus.
type NATS struct {
	URLs []string `koanf:"urls"` // external servers; empty runs one embedded
	// Embedded server only:
	Listen        string   `koanf:"listen"`         // client port for other chatd processes; empty: in-process only
	ClusterName   string   `koanf:"cluster_name"`   // set to cluster embedded servers of several nodes
	ClusterListen string   `koanf:"cluster_listen"` // route listener, host:port
	Routes        []string `koanf:"routes"`         // nats-route://host:port of the other nodes
	// External servers only: a user credentials file (JWT and NKey, as
	// nsc writes it); a user and password or a token go in the URLs.
	CredsFile string `koanf:"creds_file"`
	TLS       TLS    `koanf:"tls"`
}

// EventLog is the durable message log.
type EventLog struct {
	Backend string        `koanf:"backend"` // jetstream or kafka
	MaxAge  time.Duration `koanf:"max_age"` // JetStream retention
}

// Kafka is the distributed message log.
type Kafka struct {
	Brokers           []string `koanf:"brokers"`
	Topic             string   `koanf:"topic"`
	Partitions        int      `koanf:"partitions"`
	ReplicationFactor int      `koanf:"replication_factor"`
	TLS               TLS      `koanf:"tls"`
	SASL              SASL     `koanf:"sasl"`
}

// SASL authenticates to Kafka.
type SASL struct {
	Mechanism string `koanf:"mechanism"` // "" (none), plain, scram-sha-256 or scram-sha-512
	Username  string `koanf:"username"`
	Password  string `koanf:"password"`
}

// Database holds users, sessions, rooms and members.
type Database struct {
	Backend     string `koanf:"backend"` // sqlite or postgres
	PostgresDSN string `koanf:"postgres_dsn"`
}

// Store is the message store.
type Store struct {
	Backend string `koanf:"backend"` // sqlite or scylla
	// BackgroundNice is the CPU priority (Linux nice, 0-19) of the threads
	// that write the store and the search index and checkpoint SQLite:
	// above 0 they yield to live traffic when the CPU is contended.
	BackgroundNice int `koanf:"background_nice"`
}

// Scylla is the distributed message store.
type Scylla struct {
	Hosts       []string      `koanf:"hosts"`
	Keyspace    string        `koanf:"keyspace"`
	Replication string        `koanf:"replication"`
	Consistency string        `koanf:"consistency"`
	BucketSpan  time.Duration `koanf:"bucket_span"`
	Username    string        `koanf:"username"` // PasswordAuthenticator when set
	Password    string        `koanf:"password"`
	TLS         TLS           `koanf:"tls"`
}

// Search is the history and search index.
type Search struct {
	Backend string `koanf:"backend"` // sqlite or elasticsearch
}

// Elasticsearch is the distributed search index.
type Elasticsearch struct {
	Addresses     []string      `koanf:"addresses"`
	Username      string        `koanf:"username"`
	Password      string        `koanf:"password"`
	Index         string        `koanf:"index"`
	Flavor        string        `koanf:"flavor"` // elasticsearch or opensearch
	BulkMaxDocs   int           `koanf:"bulk_max_docs"`
	BulkMaxBytes  int           `koanf:"bulk_max_bytes"`
	FlushInterval time.Duration `koanf:"flush_interval"`
	TLS           TLS           `koanf:"tls"` // for https:// addresses
}

// Redis is the session cache, rate limits, nonces and recent window.
type Redis struct {
	URL           string `koanf:"url"` // empty runs an embedded in-process Redis
	Prefix        string `koanf:"prefix"`
	RecentPerRoom int    `koanf:"recent_per_room"`
}

// GRPC is how roles in separate processes reach each other.
type GRPC struct {
	Addr      string `koanf:"addr"`       // listen address for this process's user, room and query roles; empty: none
	UserAddr  string `koanf:"user_addr"`  // where the user role is, when not in this process
	RoomAddr  string `koanf:"room_addr"`  // where the room role is
	QueryAddr string `koanf:"query_addr"` // where the query role is
	// TLS between roles: this process serves addr with cert_file and, with
	// ca_file, accepts only clients whose certificate ca_file signed; it
	// dials the other roles verifying them by ca_file, presenting cert_file.
	TLS TLS `koanf:"tls"`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		DataDir: "./data",
		Roles:   slices.Clone(Roles),
		Log:     Log{Level: "info", Format: "auto"},
		HTTP: HTTP{
			Addr:            ":8080",
			AllowedOrigins:  []string{},
			MaxBodyBytes:    1 << 20,
			ShutdownTimeout: 10 * time.Second,
		},
		Gateway: Gateway{
			MaxFrameBytes:   16 << 10,
			SendQueue:       512,
			PingInterval:    30 * time.Second,
			WriteTimeout:    10 * time.Second,
			MaxConnsPerUser: 32,
			MaxBadFrames:    10,
			TypingInterval:  2 * time.Second,
			ShedAfter:       3 * time.Second,
		},
		Limits:   Limits{SendRate: 10, SendBurst: 20, SendPeriod: time.Second, LoginRate: 10},
		Sessions: Sessions{TTL: 30 * 24 * time.Hour, CacheTTL: 30 * time.Second},
		Ingest:   Ingest{Buffer: 8192, MaxBatch: 512, Timeout: 5 * time.Second, NonceTTL: 10 * time.Minute, MaxBacklog: 500 * time.Millisecond, Linger: 500 * time.Microsecond},
		NATS:     NATS{URLs: []string{}, Routes: []string{}},
		EventLog: EventLog{Backend: "jetstream", MaxAge: 7 * 24 * time.Hour},
		Kafka:    Kafka{Brokers: []string{}, Topic: "message", Partitions: 12, ReplicationFactor: 1},
		Database: Database{Backend: "sqlite"},
		Store:    Store{Backend: "sqlite", BackgroundNice: 10},
		Scylla: Scylla{
			Hosts:       []string{},
			Keyspace:    "chatd",
			Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}",
			Consistency: "LOCAL_QUORUM",
			BucketSpan:  10 * 24 * time.Hour,
		},
		Search: Search{Backend: "sqlite"},
		Elasticsearch: Elasticsearch{
			Addresses:     []string{},
			Index:         "chatd-messages",
			Flavor:        "elasticsearch",
			BulkMaxDocs:   1000,
			BulkMaxBytes:  5 << 20,
			FlushInterval: time.Second,
		},
		Redis: Redis{Prefix: "chatd:", RecentPerRoom: 1000},
	}
}

// EnvPrefix starts every environment variable chatd reads.
const EnvPrefix = "CHATD_"

// EnvName returns the environment variable of a key: http.max_body_bytes →
// CHATD_HTTP_MAX_BODY_BYTES.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load builds the configuration: defaults < file (if path is not empty) <
// environment (environ, as from os.Environ) < sets (key=value).
func Load(path string, environ []string, sets map[string]string) (Config, error) {
	k := koanf.New(".")
	def := Default()
	if err := k.Load(structs.Provider(def, "koanf"), nil); err != nil {
		return Config{}, fmt.Errorf("load defaults: %w", err)
	}
	known := map[string]reflect.Kind{}
	for key, v := range k.All() {
		known[key] = reflect.TypeOf(v).Kind()
	}
	if path != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), toml.Parser()); err != nil {
			return Config{}, fmt.Errorf("read config file %s: %w", path, err)
		}
		for _, key := range fk.Keys() {
			if _, ok := known[key]; !ok {
				return Config{}, fmt.Errorf("in %s: unknown key %q", path, key)
			}
		}
		if err := k.Merge(fk); err != nil {
			return Config{}, fmt.Errorf("merge config file: %w", err)
		}
	}
	envNames := map[string]string{}
	for key := range known {
		envNames[EnvName(key)] = key
	}
	over := map[string]any{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if key, ok := envNames[name]; ok {
			over[key] = fromString(val, known[key])
		}
	}
	for key, val := range sets {
		kind, ok := known[key]
		if !ok {
			return Config{}, fmt.Errorf("unknown key %q", key)
		}
		over[key] = fromString(val, kind)
	}
	if err := k.Load(confmap.Provider(over, "."), nil); err != nil {
		return Config{}, fmt.Errorf("load overrides: %w", err)
	}
	var cfg Config
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:       mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(",")),
			ErrorUnused:      true,
			WeaklyTypedInput: true,
			Result:           &cfg,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// fromString turns an environment or flag value into the key's kind; lists
// are comma-separated.
func fromString(val string, kind reflect.Kind) any {
	if kind == reflect.Slice {
		if strings.TrimSpace(val) == "" {
			return []string{}
		}
		parts := strings.Split(val, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts
	}
	return val
}

// Has reports whether the configuration runs role.
func (c Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Validate checks every setting, naming the key of the first bad one.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("in %s: %s", key, fmt.Sprintf(format, args...))
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if len(c.Roles) == 0 {
		return bad("roles", "must name at least one of %s", strings.Join(Roles, ", "))
	}
	seen := map[string]bool{}
	for _, r := range c.Roles {
		if !slices.Contains(Roles, r) {
			return bad("roles", "unknown role %q (known: %s)", r, strings.Join(Roles, ", "))
		}
		if seen[r] {
			return bad("roles", "role %q listed twice", r)
		}
		seen[r] = true
	}
	if c.NodeID < 0 || c.NodeID > 1023 {
		return bad("node_id", "must be 0..1023")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return bad("log.level", "must be debug, info, warn or error")
	}
	if !slices.Contains([]string{"auto", "text", "json"}, c.Log.Format) {
		return bad("log.format", "must be auto, text or json")
	}
	if c.HTTP.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.MetricsAddr); err != nil {
			return bad("http.metrics_addr", "must be host:port or empty: %v", err)
		}
	}
	if c.Debug.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.Debug.PprofAddr); err != nil {
			return bad("debug.pprof_addr", "must be host:port or empty: %v", err)
		}
	}
	if c.Has("gateway") {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			return bad("http.addr", "must be host:port: %v", err)
		}
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"http.max_body_bytes", c.HTTP.MaxBodyBytes},
		{"http.shutdown_timeout", int64(c.HTTP.ShutdownTimeout)},
		{"gateway.max_frame_bytes", c.Gateway.MaxFrameBytes},
		{"gateway.send_queue", int64(c.Gateway.SendQueue)},
		{"gateway.ping_interval", int64(c.Gateway.PingInterval)},
		{"gateway.write_timeout", int64(c.Gateway.WriteTimeout)},
		{"gateway.max_conns_per_user", int64(c.Gateway.MaxConnsPerUser)},
		{"gateway.max_bad_frames", int64(c.Gateway.MaxBadFrames)},
		{"gateway.shed_after", int64(c.Gateway.ShedAfter)},
		{"sessions.ttl", int64(c.Sessions.TTL)},
		{"ingest.buffer", int64(c.Ingest.Buffer)},
		{"ingest.max_batch", int64(c.Ingest.MaxBatch)},
		{"ingest.timeout", int64(c.Ingest.Timeout)},
		{"ingest.nonce_ttl", int64(c.Ingest.NonceTTL)},
		{"redis.recent_per_room", int64(c.Redis.RecentPerRoom)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return bad(p.key, "must be > 0")
		}
	}
	nonNeg := []struct {
		key string
		v   int64
	}{
		{"limits.send_rate", int64(c.Limits.SendRate)},
		{"limits.send_burst", int64(c.Limits.SendBurst)},
		{"limits.login_rate", int64(c.Limits.LoginRate)},
		{"sessions.cache_ttl", int64(c.Sessions.CacheTTL)},
		{"gateway.typing_interval", int64(c.Gateway.TypingInterval)},
		{"ingest.max_backlog", int64(c.Ingest.MaxBacklog)},
		{"ingest.linger", int64(c.Ingest.Linger)},
	}
	for _, p := range nonNeg {
		if p.v < 0 {
			return bad(p.key, "must be >= 0")
		}
	}
	if c.Store.BackgroundNice < 0 || c.Store.BackgroundNice > 19 {
		return bad("store.background_nice", "must be 0 to 19")
	}
	if c.Gateway.MaxFrameBytes < 1024 {
		return bad("gateway.max_frame_bytes", "must be at least 1024")
	}
	if c.Limits.SendRate > 0 && c.Limits.SendPeriod <= 0 {
		return bad("limits.send_period", "must be > 0 when limits.send_rate is set")
	}
	switch c.EventLog.Backend {
	case "jetstream":
	case "kafka":
		if len(c.Kafka.Brokers) == 0 {
			return bad("kafka.brokers", "must list at least one broker when eventlog.backend = \"kafka\"")
		}
		if c.Kafka.Topic == "" {
			return bad("kafka.topic", "must not be empty")
		}
	default:
		return bad("eventlog.backend", "must be jetstream or kafka")
	}
	switch c.Database.Backend {
	case "sqlite":
	case "postgres":
		if c.Database.PostgresDSN == "" {
			return bad("database.postgres_dsn", "must be set when database.backend = \"postgres\"")
		}
	default:
		return bad("database.backend", "must be sqlite or postgres")
	}
	switch c.Store.Backend {
	case "sqlite":
	case "scylla":
		if len(c.Scylla.Hosts) == 0 {
			return bad("scylla.hosts", "must list at least one host when store.backend = \"scylla\"")
		}
		if c.Scylla.BucketSpan < time.Hour {
			return bad("scylla.bucket_span", "must be at least 1h")
		}
	default:
		return bad("store.backend", "must be sqlite or scylla")
	}
	switch c.Search.Backend {
	case "sqlite":
	case "elasticsearch":
		if len(c.Elasticsearch.Addresses) == 0 {
			return bad("elasticsearch.addresses", "must list at least one address when search.backend = \"elasticsearch\"")
		}
		if c.Elasticsearch.Flavor != "elasticsearch" && c.Elasticsearch.Flavor != "opensearch" {
			return bad("elasticsearch.flavor", "must be elasticsearch or opensearch")
		}
	default:
		return bad("search.backend", "must be sqlite or elasticsearch")
	}
	for _, u := range c.NATS.URLs {
		if !strings.Contains(u, "://") {
			return bad("nats.urls", "%q is not a URL like nats://host:4222", u)
		}
	}
	if c.NATS.ClusterName != "" && c.NATS.ClusterListen == "" {
		return bad("nats.cluster_listen", "must be set when nats.cluster_name is")
	}
	for _, t := range []struct {
		key string
		tls TLS
	}{
		{"nats.tls", c.NATS.TLS}, {"kafka.tls", c.Kafka.TLS}, {"scylla.tls", c.Scylla.TLS},
		{"elasticsearch.tls", c.Elasticsearch.TLS}, {"grpc.tls", c.GRPC.TLS},
	} {
		if err := t.tls.validate(t.key); err != nil {
			return err
		}
	}
	if c.GRPC.TLS.Enabled && c.GRPC.Addr != "" && c.GRPC.TLS.CertFile == "" {
		return bad("grpc.tls.cert_file", "must be set to serve grpc.addr over TLS")
	}
	switch c.Kafka.SASL.Mechanism {
	case "":
		if c.Kafka.SASL.Username != "" || c.Kafka.SASL.Password != "" {
			return bad("kafka.sasl.mechanism", "must be set when kafka.sasl.username or password is")
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.Kafka.SASL.Username == "" {
			return bad("kafka.sasl.username", "must be set with kafka.sasl.mechanism")
		}
	default:
		return bad("kafka.sasl.mechanism", "must be plain, scram-sha-256, scram-sha-512 or empty")
	}
	if c.Scylla.Password != "" && c.Scylla.Username == "" {
		return bad("scylla.username", "must be set when scylla.password is")
	}
	if c.NATS.CredsFile != "" && len(c.NATS.URLs) == 0 {
		return bad("nats.creds_file", "is for external servers (nats.urls)")
	}
	if c.NATS.TLS.Enabled && len(c.NATS.URLs) == 0 {
		return bad("nats.tls", "is for external servers (nats.urls); the embedded server is reached in process")
	}
	return nil
}

// Keys returns every configuration key, sorted (for docs and tests).
func Keys() []string {
	k := koanf.New(".")
	_ = k.Load(structs.Provider(Default(), "koanf"), nil)
	keys := k.Keys()
	sort.Strings(keys)
	return keys
}
