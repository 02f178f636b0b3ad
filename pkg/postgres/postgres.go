// Package postgres implements chat.AccountStore and chat.RoomStore on
// PostgreSQL with pgx, for the distributed deployment of the user and room
// roles.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatd/chatd/migrations"
	"github.com/chatd/chatd/pkg/chat"
)

// Config says where the database is.
type Config struct {
	// DSN is a libpq-style URL or key=value string. It holds the password,
	// so it is never logged.
	DSN string
	// Schema, if set, is the only schema on the search path: every table is
	// created and read there. Migrate creates it. Tests use one fresh schema
	// each; operators may use it to share a database.
	Schema string
	// MaxConns bounds the pool; 0 keeps pgxpool's default (max(4, CPUs)).
	MaxConns int32
}

// DB is a pool of connections to one PostgreSQL database (and schema).
type DB struct {
	pool   *pgxpool.Pool
	schema string
	log    *slog.Logger
}

var (
	_ chat.AccountStore = (*DB)(nil)
	_ chat.RoomStore    = (*DB)(nil)
)

// Open connects to the database at dsn.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	return OpenConfig(ctx, Config{DSN: dsn}, log)
}

// OpenConfig connects to the database of cfg and checks that it answers.
func OpenConfig(ctx context.Context, cfg Config, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors may quote the DSN, password included.
		return nil, errors.New("postgres: invalid dsn")
	}
	if cfg.Schema != "" {
		// A startup parameter rather than a SET after connect, so it holds on
		// every pooled connection, including ones pgxpool opens later.
		pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d/%s: %w: %w", pc.ConnConfig.Host, pc.ConnConfig.Port,
			pc.ConnConfig.Database, chat.Errorf(chat.EUNAVAILABLE, "database unavailable"), err)
	}
	log = log.With("backend", "postgres")
	log.Info("postgres connected", "host", pc.ConnConfig.Host, "port", pc.ConnConfig.Port,
		"database", pc.ConnConfig.Database, "schema", cfg.Schema)
	return &DB{pool: pool, schema: cfg.Schema, log: log}, nil
}

// Close closes every connection of the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping reports whether the database answers, for readiness checks.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", dbErr(err))
	}
	return nil
}

// Pool returns the underlying pool, for tests and tools.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Migrate applies the files of migrations/postgres that the database has not
// run yet, in file-name order, each recorded in schema_migrations.
//
// Everything runs in one transaction under a transaction-scoped advisory
// lock: several chatd processes starting at once serialize here, the later
// ones find the work done, and a failed file leaves no half-applied schema
// (PostgreSQL DDL is transactional). The lock is released by the commit or
// rollback even if this process dies, which a session lock on a pooled
// connection would not guarantee.
func (db *DB) Migrate(ctx context.Context) error {
	files, err := migrationFiles()
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", dbErr(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit

	// One lock per schema, so tests migrating fresh schemas in parallel do
	// not wait on each other.
	h := fnv.New64a()
	h.Write([]byte("chatd.migrate." + db.schema))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", dbErr(err))
	}
	if db.schema != "" {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{db.schema}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: migrate: create schema: %w", dbErr(err))
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    text        PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: create schema_migrations: %w", dbErr(err))
	}
	rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: read versions: %w", dbErr(err))
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("postgres: migrate: read versions: %w", dbErr(err))
	}
	applied := make(map[string]bool, len(done))
	for _, v := range done {
		applied[v] = true
	}
	var ran []string
	for _, f := range files {
		if applied[f.version] {
			continue
		}
		// No arguments: pgx uses the simple protocol, which runs a file of
		// several statements in one round trip.
		if _, err := tx.Exec(ctx, f.sql); err != nil {
			return fmt.Errorf("postgres: migrate: apply %s: %w", f.version, dbErr(err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", f.version); err != nil {
			return fmt.Errorf("postgres: migrate: record %s: %w", f.version, dbErr(err))
		}
		ran = append(ran, f.version)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", dbErr(err))
	}
	if len(ran) > 0 {
		db.log.Info("postgres migrated", "applied", strings.Join(ran, ","))
	}
	return nil
}

type migration struct {
	version string // file name without .sql
	sql     string
}

func migrationFiles() ([]migration, error) {
	names, err := fs.Glob(migrations.Postgres, "postgres/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	ms := make([]migration, 0, len(names))
	for _, n := range names {
		b, err := fs.ReadFile(migrations.Postgres, n)
		if err != nil {
			return nil, err
		}
		v := strings.TrimSuffix(strings.TrimPrefix(n, "postgres/"), ".sql")
		ms = append(ms, migration{version: v, sql: string(b)})
	}
	return ms, nil
}

// PostgreSQL error codes this package tells apart.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

// dbErr attaches a domain code to a database error while keeping the
// original in the chain for the log: callers see EUNAVAILABLE when the
// database cannot be reached, and "internal error" for anything else, never
// SQL text.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	if chat.AsError(err) != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", chat.Errorf(chat.EUNAVAILABLE, "database unavailable"), err)
	}
	return err
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// PostgreSQL's timestamptz holds microseconds; the nanoseconds below that go
// to a separate column so times round-trip exactly.
func splitTime(t time.Time) (time.Time, int16) {
	t = t.UTC()
	us := t.Truncate(time.Microsecond)
	return us, int16(t.Sub(us))
}

func joinTime(t time.Time, ns int16) time.Time {
	return t.UTC().Add(time.Duration(ns))
}
