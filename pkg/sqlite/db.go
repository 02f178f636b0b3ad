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
	"github.com/chatd/chatd/pkg/prio"
)

// db is one SQLite file with a single writer connection and a pool of
// readers. SQLite serialises writers anyway; funnelling them through one
// connection makes them queue in Go instead of spinning on SQLITE_BUSY, while
// WAL lets the readers run beside the writer.
type db struct {
	w   *sql.DB
	r   *sql.DB
	log *slog.Logger
	// ck runs the WAL checkpoints in the background (see checkpointer).
	ck   *sql.DB
	stop chan struct{}
	done chan struct{}
	// dirty gets a value (without blocking) when the writer commits, so
	// the checkpointer sleeps while nothing is written.
	dirty chan struct{}
	// stmts are the writer's prepared statements, closed with it.
	stmts []*sql.Stmt
}

// The writer checkpoints by itself only once the WAL holds this many pages
// (64 MB at 4 KB): a backstop for when the background checkpointer falls
// behind. SQLite's default of 1,000 pages put a checkpoint, with its fsyncs,
// on the commit path of every few batches, which was most of a batch's
// time.
const walBackstopPages = 16384

// checkpointEvery is how often, at most, the background checkpointer copies
// the WAL into the database while the writer commits.
const checkpointEvery = 200 * time.Millisecond

// checkpointIdle is how often the checkpointer checks the WAL with no commit
// signalled: a backstop, should the writer's connection (and its commit
// hook) ever be replaced. Polling every checkpointEvery instead cost an idle
// server about 0.45% of a CPU over its three databases.
const checkpointIdle = 10 * time.Second

// chunkSizes are the sizes chunks returns, largest first.
var chunkSizes = []int{rowsPerInsert, 128, 64, 32, 16, 8, 4, 2, 1}

// chunks splits n rows into the sizes of the multi-row INSERTs that write
// them: as many rowsPerInsert as fit, then powers of two. So a writer
// prepares a handful of statement shapes once and reuses them, whatever
// the batch sizes, instead of parsing a new statement for every batch.
func chunks(n int) []int {
	var out []int
	for n >= rowsPerInsert {
		out = append(out, rowsPerInsert)
		n -= rowsPerInsert
	}
	for _, size := range chunkSizes[1:] {
		if n >= size {
			out = append(out, size)
			n -= size
		}
	}
	return out
}

// insertStmts is a multi-row statement for each of chunkSizes.
type insertStmts map[int]*sql.Stmt

// prepareInserts prepares build(n) on the writer for each of chunkSizes.
// It must run outside any transaction: the writer's one connection would
// be taken.
func (d *db) prepareInserts(ctx context.Context, build func(n int) string) (insertStmts, error) {
	out := insertStmts{}
	for _, n := range chunkSizes {
		st, err := d.w.PrepareContext(ctx, build(n))
		if err != nil {
			return nil, err
		}
		d.stmts = append(d.stmts, st)
		out[n] = st
	}
	return out, nil
}

// in returns the statement for n rows bound to tx. The writer has one
// connection, the one tx holds, so this reuses the prepared statement.
func (s insertStmts) in(ctx context.Context, tx *sql.Tx, n int) *sql.Stmt {
	return tx.StmtContext(ctx, s[n])
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
	// the syscall path. The map covers up to 2 GB (SQLite's default cap),
	// the message store of about 15 million messages: with a smaller map
	// a read past it was a pread into one connection's own cache, which
	// the next read, on another pooled connection, missed.
	q.Add("_pragma", "cache_size(-32000)")
	q.Add("_pragma", "mmap_size(2147418112)")
	q.Add("_pragma", "temp_store(MEMORY)")
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Add("_pragma", "journal_mode(WAL)")
	// Checkpoints, with their fsyncs, run in checkpointer, off the commit
	// path; the WAL file is cut back to this size after each restart.
	wq.Add("_pragma", "wal_autocheckpoint("+strconv.Itoa(walBackstopPages)+")")
	wq.Add("_pragma", "journal_size_limit(67108864)")
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
	d := &db{w: w, log: log, dirty: make(chan struct{}, 1)}
	if err := d.hookCommits(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", schema, err)
	}
	if err := d.migrate(ctx, schema); err != nil {
		w.Close()
		return nil, err
	}
	// Readers are opened after the writer switched the file to WAL.
	ck, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s checkpointer: %w", schema, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxIdleTime(0)
	q.Add("_pragma", "query_only(true)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		ck.Close()
		return nil, fmt.Errorf("open %s readers: %w", schema, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		ck.Close()
		r.Close()
		return nil, fmt.Errorf("open %s readers: %w", schema, err)
	}
	d.r = r
	d.ck, d.stop, d.done = ck, make(chan struct{}), make(chan struct{})
	go d.checkpointer()
	return d, nil
}

// checkpointer copies committed WAL frames into the database file, at most
// every checkpointEvery while the writer commits. A PASSIVE checkpoint
// never blocks the writer or the readers, so the fsyncs a checkpoint needs
// no longer stall a batch: with synchronous=NORMAL a WAL commit itself does
// not fsync. Once a checkpoint has copied the whole WAL, the writer's next
// transaction starts the WAL over from its beginning, so the file stays
// small.
//
// It waits for a commit (d.dirty) rather than polling, so an idle database
// costs one wake-up per checkpointIdle.
func (d *db) checkpointer() {
	defer close(d.done)
	prio.Background() // nobody waits on a checkpoint
	t := time.NewTimer(checkpointIdle)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.dirty:
			// Let the writer commit for a while first: at most one
			// checkpoint per checkpointEvery.
			t.Reset(checkpointEvery)
			select {
			case <-d.stop:
				return
			case <-t.C:
			}
		case <-t.C:
		}
		t.Reset(checkpointIdle)
		var busy, logPages, done int
		if err := d.ck.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &done); err != nil {
			d.log.Warn("wal checkpoint", "err", err)
		}
	}
}

// hookCommits signals d.dirty at every commit of the writer's connection.
// The writer pool holds one connection for good, so one hook covers every
// write.
func (d *db) hookCommits(ctx context.Context) error {
	c, err := d.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Raw(func(dc any) error {
		h, ok := dc.(interface{ RegisterCommitHook(sqlite.CommitHookFn) })
		if !ok {
			return fmt.Errorf("the SQLite driver's connection (%T) takes no commit hook", dc)
		}
		h.RegisterCommitHook(func() int32 {
			select {
			case d.dirty <- struct{}{}:
			default:
			}
			return 0 // 0 lets the commit go on
		})
		return nil
	})
}

func (d *db) close() error {
	close(d.stop)
	<-d.done
	var errs []error
	for _, st := range d.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, d.r.Close(), d.ck.Close(), d.w.Close())...)
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
