// Package sqlite implements chatd's embedded backends on SQLite (pure Go,
// modernc.org/sqlite): the account and room store, the message store and the
// search index. Each lives in its own database file, because SQLite admits
// one writer per file and the three roles write independently.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/chatd/chatd/migrations"
	"github.com/chatd/chatd/pkg/chat"
)

// db is one SQLite file with a single writer connection and a pool of
// readers. SQLite serialises writers anyway; funnelling them through one
// connection makes them queue in Go instead of spinning on SQLITE_BUSY, while
// WAL lets the readers run beside the writer.
type db struct {
	w   *sql.DB
	r   *sql.DB
	log *slog.Logger
}

// openDB opens (creating if needed) the file at path and applies the
// migrations named <schema>_*.sql.
func openDB(ctx context.Context, path, schema string, foreignKeys bool, log *slog.Logger) (*db, error) {
	if path == "" {
		return nil, errors.New("empty database path")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := url.Values{}
	// A writer waiting for a checkpoint or another process's lock waits
	// rather than failing the request.
	q.Add("_pragma", "busy_timeout(10000)")
	// NORMAL in WAL mode loses no committed transaction when the process is
	// killed; only a power loss can drop the last few, and never corrupts.
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys("+strconv.FormatBool(foreignKeys)+")")
	// Larger page cache and memory-mapped reads keep hot index pages out of
	// the syscall path.
	q.Add("_pragma", "cache_size(-32000)")
	q.Add("_pragma", "mmap_size(268435456)")
	q.Add("_pragma", "temp_store(MEMORY)")
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Add("_pragma", "journal_mode(WAL)")
	// BEGIN IMMEDIATE takes the write lock up front, so a transaction never
	// fails half-way on a lock upgrade.
	wq.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", schema, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	d := &db{w: w, log: log}
	if err := d.migrate(ctx, schema); err != nil {
		w.Close()
		return nil, err
	}
	// Readers are opened after the writer switched the file to WAL.
	q.Add("_pragma", "query_only(true)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s readers: %w", schema, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open %s readers: %w", schema, err)
	}
	d.r = r
	return d, nil
}

func (d *db) close() error {
	return errors.Join(d.r.Close(), d.w.Close())
}

// migrate applies the migrations of schema not yet recorded in
// schema_migrations, each in its own transaction with its record, so a crash
// mid-way leaves the database at a clean version.
func (d *db) migrate(ctx context.Context, schema string) error {
	if _, err := d.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	names, err := fs.Glob(migrations.SQLite, "sqlite/"+schema+"_*.sql")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "sqlite/"+schema+"_"), ".sql")
		v, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(v)
		if err != nil || version <= 0 {
			return fmt.Errorf("migrate %s: bad migration name %s", schema, n)
		}
		migs = append(migs, mig{version, n})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	for _, m := range migs {
		if err := d.apply(ctx, schema, m.version, m.name); err != nil {
			return err
		}
	}
	return nil
}

func (d *db) apply(ctx context.Context, schema string, version int, name string) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	if n > 0 {
		return nil
	}
	body, err := fs.ReadFile(migrations.SQLite, name)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("migrate %s: %s: %w", schema, name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		version, name, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	d.log.Info("applied migration", "schema", schema, "version", version, "name", name)
	return nil
}

// isConstraint reports whether err is a UNIQUE or PRIMARY KEY violation.
func isConstraint(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// Times are stored as unix nanoseconds; the zero time as 0, since
// time.Time{}.UnixNano is out of int64's range.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func toNullNanos(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: toNanos(*t), Valid: true}
}

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// checkLimit refuses a page size a caller cannot have meant; the roles
// above clamp user input to the API's limits before it reaches a store.
func checkLimit(limit int) error {
	if limit <= 0 {
		return chat.Errorf(chat.EINVALID, "limit must be positive")
	}
	return nil
}
