// Package scylla implements chat.MessageStore on ScyllaDB (or Apache
// Cassandra) with gocql, using Discord's schema: one partition per room and
// bucket of time, clustered by message ID newest first
// (migrations/cql/002_messages.cql).
package scylla

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/migrations"
	"github.com/chatd/chatd/pkg/chat"
	"github.com/gocql/gocql"
)

// Config configures the store.
type Config struct {
	// Hosts are the contact points, host or host:port. Required.
	Hosts []string
	// Keyspace holds the tables; default "chatd".
	Keyspace string
	// Replication is the CQL replication map used when Migrate creates the
	// keyspace; default "{'class':'SimpleStrategy','replication_factor':1}".
	// Production clusters want NetworkTopologyStrategy.
	Replication string
	// Consistency of reads and writes; default LOCAL_QUORUM, so a read
	// sees every acknowledged write while one replica of three is down.
	Consistency string
	// BucketSpan is the span of time one partition covers; default 10 days.
	// It must never change once messages are written: Migrate records it
	// and refuses a different one.
	BucketSpan time.Duration
	// Timeout bounds each request and connection attempt; default 10s.
	Timeout time.Duration
	// Username and Password enable PasswordAuthenticator when set.
	Username string
	Password string
	// TLS, if set, encrypts the connections to the nodes and verifies
	// each node's certificate against its host name (or TLS.ServerName).
	TLS *tls.Config
}

var keyspaceRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

func (c *Config) setDefaults() error {
	if len(c.Hosts) == 0 {
		return errors.New("in scylla.hosts: at least one host is required")
	}
	if c.Keyspace == "" {
		c.Keyspace = "chatd"
	}
	if !keyspaceRE.MatchString(c.Keyspace) {
		return fmt.Errorf("in scylla.keyspace: %q is not a valid keyspace name", c.Keyspace)
	}
	if c.Replication == "" {
		c.Replication = "{'class':'SimpleStrategy','replication_factor':1}"
	}
	if c.Consistency == "" {
		c.Consistency = "LOCAL_QUORUM"
	}
	if c.BucketSpan == 0 {
		c.BucketSpan = 10 * 24 * time.Hour
	}
	// Bucket numbers are CQL ints: a span under a minute would overflow
	// them within the lifetime of the ID epoch.
	if c.BucketSpan < time.Minute || c.BucketSpan%time.Millisecond != 0 {
		return errors.New("in scylla.bucket_span: must be a whole number of milliseconds, at least 1m")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	return nil
}

// Store is a chat.MessageStore on ScyllaDB. It is safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	session *gocql.Session
	spanMS  int64

	// Queries, with the keyspace spelled out: the session is not bound to
	// a keyspace so that Migrate can create it.
	qBucketsDown, qBucketsUp, qInsertBucket string
	qBefore, qAfter                         string
	qInsert                                 [4]string // by hasNonce | hasEdited<<1

	// known caches (room, bucket) pairs already recorded in room_buckets,
	// sparing a write per batch in the common case of a busy bucket.
	mu    sync.Mutex
	known map[roomBucket]struct{}
}

type roomBucket struct {
	room   chat.ID
	bucket int32
}

var _ chat.MessageStore = (*Store)(nil)

// maxKnown bounds the room_buckets cache; when full it is simply reset,
// which costs a few redundant idempotent writes.
const maxKnown = 100_000

// writeConcurrency bounds the inserts in flight per WriteMessages call.
const writeConcurrency = 32

// Open connects to the cluster. It does not create the schema: see Migrate.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cons, err := gocql.ParseConsistencyWrapper(cfg.Consistency)
	if err != nil {
		return nil, fmt.Errorf("in scylla.consistency: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("keyspace", cfg.Keyspace)
	cluster := gocql.NewCluster(cfg.Hosts...)
	cluster.Consistency = cons
	cluster.Timeout = cfg.Timeout
	cluster.ConnectTimeout = cfg.Timeout
	cluster.Logger = gocqlLogger{log}
	// Token-aware routing sends each statement straight to a replica of
	// its partition, saving a coordinator hop.
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	if cfg.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	if cfg.TLS != nil {
		// gocql skips verification unless told otherwise.
		cluster.SslOpts = &gocql.SslOptions{Config: cfg.TLS.Clone(), EnableHostVerification: true}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to scylla: %w", err)
	}
	ks := cfg.Keyspace
	s := &Store{
		cfg:     cfg,
		log:     log,
		session: session,
		spanMS:  cfg.BucketSpan.Milliseconds(),
		known:   make(map[roomBucket]struct{}),

		qBucketsDown:  "SELECT bucket FROM " + ks + ".room_buckets WHERE room_id = ? AND bucket <= ?",
		qBucketsUp:    "SELECT bucket FROM " + ks + ".room_buckets WHERE room_id = ? AND bucket >= ? ORDER BY bucket ASC",
		qInsertBucket: "INSERT INTO " + ks + ".room_buckets (room_id, bucket) VALUES (?, ?)",
		qBefore: "SELECT " + selectCols + " FROM " + ks + ".messages" +
			" WHERE room_id = ? AND bucket = ? AND message_id < ? LIMIT ?",
		qAfter: "SELECT " + selectCols + " FROM " + ks + ".messages" +
			" WHERE room_id = ? AND bucket = ? AND message_id > ? ORDER BY message_id ASC LIMIT ?",
	}
	for i := range s.qInsert {
		cols := "room_id, bucket, message_id, user_id, username, body, created_at, created_ns"
		vals := "?, ?, ?, ?, ?, ?, ?, ?"
		if i&1 != 0 {
			cols += ", nonce"
			vals += ", ?"
		}
		if i&2 != 0 {
			cols += ", edited_at, edited_ns"
			vals += ", ?, ?"
		}
		s.qInsert[i] = "INSERT INTO " + ks + ".messages (" + cols + ") VALUES (" + vals + ")"
	}
	return s, nil
}

// Close closes the session.
func (s *Store) Close() error {
	s.session.Close()
	return nil
}

// Migrate creates the keyspace and tables from migrations/cql, in file
// order. Every statement is IF NOT EXISTS, so it runs at every start-up.
// It also records the bucket span and refuses to continue if the keyspace
// was created with another one.
func (s *Store) Migrate(ctx context.Context) error {
	files, err := fs.Glob(migrations.CQL, "cql/*.cql")
	if err != nil {
		return fmt.Errorf("list cql migrations: %w", err)
	}
	sort.Strings(files)
	for _, name := range files {
		b, err := fs.ReadFile(migrations.CQL, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		text := strings.NewReplacer("{{keyspace}}", s.cfg.Keyspace, "{{replication}}", s.cfg.Replication).Replace(string(b))
		for _, stmt := range splitCQL(text) {
			if err := s.session.Query(stmt).WithContext(ctx).Exec(); err != nil {
				return fmt.Errorf("migrate %s: %w", name, err)
			}
		}
	}
	want := strconv.FormatInt(s.spanMS, 10)
	got := map[string]any{}
	applied, err := s.session.Query("INSERT INTO "+s.cfg.Keyspace+".settings (name, value) VALUES ('bucket_span_ms', ?) IF NOT EXISTS", want).
		WithContext(ctx).SerialConsistency(gocql.LocalSerial).MapScanCAS(got)
	if err != nil {
		return fmt.Errorf("record bucket span: %w", err)
	}
	if v, _ := got["value"].(string); !applied && v != want {
		return fmt.Errorf("in scylla.bucket_span: keyspace %s was created with a bucket span of %sms, not %sms; the span cannot change", s.cfg.Keyspace, v, want)
	}
	return nil
}

// splitCQL splits a file into statements, dropping "--" comment lines.
func splitCQL(text string) []string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	var out []string
	for stmt := range strings.SplitSeq(b.String(), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// bucket returns the bucket of a message or room ID: the ID's millisecond
// divided by the span.
func (s *Store) bucket(id chat.ID) int32 {
	return int32((int64(id) >> 22) / s.spanMS)
}

// WriteMessages records each message's bucket in room_buckets, then inserts
// the messages concurrently. Inserts are idempotent (same primary key, same
// values), so a redelivered batch changes nothing. The bucket is recorded
// first so a reader never misses a bucket that already holds messages.
func (s *Store) WriteMessages(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var fresh []roomBucket
	seen := map[roomBucket]struct{}{}
	s.mu.Lock()
	for _, m := range msgs {
		rb := roomBucket{m.RoomID, s.bucket(m.ID)}
		if _, ok := s.known[rb]; ok {
			continue
		}
		if _, ok := seen[rb]; !ok {
			seen[rb] = struct{}{}
			fresh = append(fresh, rb)
		}
	}
	s.mu.Unlock()
	err := parallel(ctx, len(fresh), func(ctx context.Context, i int) error {
		return s.session.Query(s.qInsertBucket, int64(fresh[i].room), fresh[i].bucket).
			WithContext(ctx).Idempotent(true).Exec()
	})
	if err != nil {
		return fmt.Errorf("write room bucket: %w", unavailable(err))
	}
	s.mu.Lock()
	if len(s.known)+len(fresh) > maxKnown {
		clear(s.known)
	}
	for _, rb := range fresh {
		s.known[rb] = struct{}{}
	}
	s.mu.Unlock()

	err = parallel(ctx, len(msgs), func(ctx context.Context, i int) error {
		m := &msgs[i]
		ms, ns := splitTime(m.CreatedAt)
		args := []any{int64(m.RoomID), s.bucket(m.ID), int64(m.ID), int64(m.UserID), m.Username, m.Body, ms, ns}
		variant := 0
		if m.Nonce != "" {
			variant |= 1
			args = append(args, m.Nonce)
		}
		if m.EditedAt != nil {
			variant |= 2
			ems, ens := splitTime(*m.EditedAt)
			args = append(args, ems, ens)
		}
		return s.session.Query(s.qInsert[variant], args...).WithContext(ctx).Idempotent(true).Exec()
	})
	if err != nil {
		return fmt.Errorf("write messages: %w", unavailable(err))
	}
	return nil
}

// parallel runs fn(0..n-1) with at most writeConcurrency at once and
// returns the first error; the others are cancelled.
func parallel(ctx context.Context, n int, fn func(context.Context, int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, writeConcurrency)
	)
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// splitTime splits t into Unix milliseconds (floored, for the CQL
// timestamp) and the nanoseconds within that millisecond, so the pair is
// exact for any time, including the zero time, without overflowing
// UnixNano.
func splitTime(t time.Time) (int64, int32) {
	return t.UnixMilli(), int32(t.Nanosecond() % 1e6)
}

func joinTime(ms int64, ns int32) time.Time {
	return time.UnixMilli(ms).Add(time.Duration(ns)).UTC()
}

const selectCols = "message_id, user_id, username, body, created_at, created_ns, nonce, edited_at, edited_ns"

// MessagesBefore walks the room's buckets from the one holding before
// towards the room's first, newest first, until limit messages are found.
func (s *Store) MessagesBefore(ctx context.Context, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	if limit <= 0 {
		return []chat.Message{}, nil
	}
	if before <= 0 {
		before = chat.ID(1<<63 - 1)
	}
	out, err := s.walk(ctx, roomID, s.qBucketsDown, s.bucket(before), s.qBefore, int64(before), limit)
	if err != nil {
		return nil, fmt.Errorf("messages before: %w", unavailable(err))
	}
	// Collected newest first; the API wants oldest first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// MessagesAfter walks the room's buckets from the one holding after
// towards the newest, oldest first, until limit messages are found.
func (s *Store) MessagesAfter(ctx context.Context, roomID, after chat.ID, limit int) ([]chat.Message, error) {
	if limit <= 0 {
		return []chat.Message{}, nil
	}
	if after < 0 {
		after = 0
	}
	out, err := s.walk(ctx, roomID, s.qBucketsUp, s.bucket(after), s.qAfter, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("messages after: %w", unavailable(err))
	}
	return out, nil
}

// walk lists the room's non-empty buckets from start in the direction of
// bucketsQ and reads each with msgQ until limit messages are collected.
func (s *Store) walk(ctx context.Context, roomID chat.ID, bucketsQ string, start int32, msgQ string, bound int64, limit int) ([]chat.Message, error) {
	out := make([]chat.Message, 0, min(limit, 256))
	bi := s.session.Query(bucketsQ, int64(roomID), start).WithContext(ctx).PageSize(100).Iter()
	var bucket int32
	for len(out) < limit && bi.Scan(&bucket) {
		mi := s.session.Query(msgQ, int64(roomID), bucket, bound, limit-len(out)).WithContext(ctx).Iter()
		var (
			id, user, createdMS int64
			username, body      string
			createdNS           int32
			nonce               string
			editedMS            *int64
			editedNS            *int32
		)
		for mi.Scan(&id, &user, &username, &body, &createdMS, &createdNS, &nonce, &editedMS, &editedNS) {
			m := chat.Message{
				ID: chat.ID(id), RoomID: roomID, UserID: chat.ID(user), Username: username, Body: body,
				CreatedAt: joinTime(createdMS, createdNS), Nonce: nonce,
			}
			if editedMS != nil {
				var ns int32
				if editedNS != nil {
					ns = *editedNS
				}
				e := joinTime(*editedMS, ns)
				m.EditedAt = &e
			}
			out = append(out, m)
			editedMS, editedNS, nonce = nil, nil, ""
		}
		if err := mi.Close(); err != nil {
			bi.Close()
			return nil, err
		}
	}
	if err := bi.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// unavailable marks errors that mean the cluster cannot serve now (no
// replica reachable, a timeout) as chat.EUNAVAILABLE, so clients see a 503
// they may retry rather than an internal error.
func unavailable(err error) error {
	var (
		unavail *gocql.RequestErrUnavailable
		rto     *gocql.RequestErrReadTimeout
		wto     *gocql.RequestErrWriteTimeout
		nerr    net.Error
	)
	if errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, gocql.ErrTimeoutNoResponse) ||
		errors.Is(err, gocql.ErrConnectionClosed) || errors.Is(err, gocql.ErrSessionClosed) ||
		errors.As(err, &unavail) || errors.As(err, &rto) || errors.As(err, &wto) || errors.As(err, &nerr) {
		return fmt.Errorf("%w: %w", chat.Errorf(chat.EUNAVAILABLE, "message store unavailable"), err)
	}
	return err
}

// gocqlLogger adapts gocql's Printf-style logger to slog. gocql logs
// connection trouble (a node down, a reconnect), worth an operator's eye.
type gocqlLogger struct{ log *slog.Logger }

func (g gocqlLogger) Print(v ...any) { g.emit(fmt.Sprint(v...)) }
func (g gocqlLogger) Printf(format string, v ...any) {
	g.emit(fmt.Sprintf(format, v...))
}
func (g gocqlLogger) Println(v ...any) { g.emit(fmt.Sprintln(v...)) }
func (g gocqlLogger) emit(s string) {
	g.log.Warn("gocql", "detail", strings.TrimSpace(s))
}
