package sqlite_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/migrations"
	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/prio"
	"github.com/chatd/chatd/pkg/sqlite"
)

// The read benchmarks run against a corpus of benchRows messages (env
// CHATD_BENCH_ROWS, default 200,000) spread round-robin over benchRooms
// rooms, a millisecond apart. Building a corpus of millions takes minutes,
// so it is kept under CHATD_BENCH_DIR (default /var/tmp/chatd-bench), in a
// directory named after the schema and corpus version, and reused by later
// runs; delete the directory to reclaim the space. scripts/bench-reads.sh
// runs them at full size and prints a table.
const benchRooms = 1000

// corpusVersion changes whenever the generated messages change, so cached
// databases of an older corpus are not reused.
const corpusVersion = 2

func benchRows(tb testing.TB) int {
	tb.Helper()
	if s := os.Getenv("CHATD_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			tb.Fatalf("CHATD_BENCH_ROWS=%q: want a positive integer", s)
		}
		return n
	}
	return 200000
}

// benchBuildLimit bounds building a corpus (env CHATD_BENCH_BUILD_LIMIT, a
// Go duration, default 30m).
func benchBuildLimit(tb testing.TB) time.Duration {
	if s := os.Getenv("CHATD_BENCH_BUILD_LIMIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			tb.Fatalf("CHATD_BENCH_BUILD_LIMIT=%q: %v", s, err)
		}
		return d
	}
	return 30 * time.Minute
}

// vocabulary is a fixed list of made-up words; bodies draw from it with a
// Zipf distribution, as natural text does, so common words match a large
// share of messages and rare words few.
func vocabulary() []string {
	r := rand.New(rand.NewPCG(1, 2))
	cons, vows := "bcdfghjklmnprstvwz", "aeiou"
	words := make([]string, 20000)
	for i := range words {
		var b strings.Builder
		for range 2 + r.IntN(3) {
			b.WriteByte(cons[r.IntN(len(cons))])
			b.WriteByte(vows[r.IntN(len(vows))])
		}
		words[i] = b.String()
	}
	return words
}

// corpus generates message i from i alone, so bulk loaders can write the
// messages in whatever order suits the table.
type corpus struct {
	words []string
	src   *rand.PCG
	r     *rand.Rand
	zipf  *rand.Zipf
	base  time.Time
}

func newCorpus() *corpus {
	src := rand.NewPCG(3, 4)
	r := rand.New(src)
	return &corpus{words: vocabulary(), src: src, r: r, zipf: rand.NewZipf(r, 1.1, 10, 20000-1),
		base: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// message i of the corpus: rooms round-robin, a millisecond apart.
func (c *corpus) message(i int) chat.Message {
	c.src.Seed(uint64(i), 0x9e3779b97f4a7c15)
	at := c.base.Add(time.Duration(i) * time.Millisecond)
	n := 3 + c.r.IntN(15)
	ws := make([]string, n)
	for j := range ws {
		ws[j] = c.words[c.zipf.Uint64()]
	}
	return chat.Message{
		ID: chat.MinIDAt(at) | chat.ID(i%4096), RoomID: chat.ID(1 + i%benchRooms), UserID: chat.ID(1 + i%5000),
		Username: "user" + strconv.Itoa(i%5000), Body: strings.Join(ws, " "), CreatedAt: at,
	}
}

// schemaHash names the migrations of schema, so a cached database is
// rebuilt when its schema changes.
func schemaHash(tb testing.TB, schema string) string {
	names, err := fs.Glob(migrations.SQLite, "sqlite/"+schema+"_*.sql")
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	for _, n := range names {
		body, err := fs.ReadFile(migrations.SQLite, n)
		if err != nil {
			tb.Fatal(err)
		}
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// cachedDB returns the path of a database of schema holding the first n
// messages of the corpus, building it with build on first use.
func cachedDB(b *testing.B, schema string, n int, build func(path string, deadline time.Time)) string {
	b.Helper()
	root := os.Getenv("CHATD_BENCH_DIR")
	if root == "" {
		root = "/var/tmp/chatd-bench"
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%s-c%d", schema, schemaHash(b, schema), corpusVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%d.db", n))
	done := path + ".done"
	if _, err := os.Stat(done); err == nil {
		return path
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(p)
	}
	start := time.Now()
	build(path, start.Add(benchBuildLimit(b)))
	b.Logf("built %s with %d messages in %v", path, n, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// bulkInsert writes the corpus messages order yields into table (the
// message store's or the search index's messages, both with messageCols),
// a million rows per transaction, with fsync off: a crash mid-build only
// leaves a database without its .done mark, which the next run rebuilds.
func bulkInsert(b *testing.B, path, table string, order func(yield func(int) bool), deadline time.Time) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=synchronous(OFF)&_pragma=journal_mode(WAL)&_pragma=cache_size(-262144)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	const rows = 200
	ins, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (id, room_id, user_id, username, body, created_at, nonce) VALUES "+
		strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,''),", rows), ","))
	if err != nil {
		b.Fatal(err)
	}
	defer ins.Close()
	c := newCorpus()
	var tx *sql.Tx
	args := make([]any, 0, 6*rows)
	written := 0
	flush := func(final bool) {
		if len(args) > 0 {
			var err error
			if len(args) == cap(args) {
				_, err = tx.StmtContext(ctx, ins).ExecContext(ctx, args...)
			} else {
				n := len(args) / 6
				_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id, room_id, user_id, username, body, created_at, nonce) VALUES "+
					strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,''),", n), ","), args...)
			}
			if err != nil {
				b.Fatal(err)
			}
			args = args[:0]
		}
		if final || written%1_000_000 == 0 {
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			tx = nil
			if time.Now().After(deadline) {
				b.Fatalf("building %s: %d rows written when the build limit passed", path, written)
			}
		}
	}
	for i := range order {
		if tx == nil {
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		m := c.message(i)
		args = append(args, int64(m.ID), int64(m.RoomID), int64(m.UserID), m.Username, m.Body, m.CreatedAt.UnixNano())
		written++
		if len(args) == cap(args) || written%1_000_000 == 0 {
			flush(false)
		}
	}
	if tx != nil {
		flush(true)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
}

// messagesDB is the message store with the first n messages, written in
// primary key order (room, ID), which is what makes loading 10 million of
// them take a minute or two rather than an hour.
func messagesDB(b *testing.B, n int) string {
	return cachedDB(b, "messages", n, func(path string, deadline time.Time) {
		m, err := sqlite.OpenMessages(context.Background(), path, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
		bulkInsert(b, path, "messages", func(yield func(int) bool) {
			for r := range benchRooms {
				for i := r; i < n; i += benchRooms {
					if !yield(i) {
						return
					}
				}
			}
		}, deadline)
	})
}

// searchDB is the search index with the first n messages: the messages
// table in ID order, then docs, rooms and the full-text index built from
// it by the same SQL migrations 0002 and 0003 run on an upgrade, a million
// messages per transaction.
func searchDB(b *testing.B, n int) string {
	return cachedDB(b, "search", n, func(path string, deadline time.Time) {
		s, err := sqlite.OpenSearch(context.Background(), path, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		bulkInsert(b, path, "messages", func(yield func(int) bool) {
			for i := range n {
				if !yield(i) {
					return
				}
			}
		}, deadline)
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=synchronous(OFF)&_pragma=journal_mode(WAL)&_pragma=cache_size(-262144)")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		for _, q := range []string{
			`INSERT INTO rooms (room_id) SELECT DISTINCT room_id FROM messages ORDER BY room_id`,
			`INSERT INTO docs (id, room_id) SELECT id, room_id FROM messages ORDER BY id`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		c := newCorpus()
		for i := 0; i < n; i += 1_000_000 {
			lo, hi := int64(c.message(i).ID), int64(c.message(min(i+1_000_000, n)-1).ID)
			if _, err := db.ExecContext(ctx, `INSERT INTO search_fts (rowid, words, room_words, author)
				SELECT m.id, chatd_search_words(m.body), chatd_room_words(r.n, m.body), m.user_id
				FROM messages m JOIN rooms r ON r.room_id = m.room_id WHERE m.id BETWEEN ? AND ? ORDER BY m.id`, lo, hi); err != nil {
				b.Fatal(err)
			}
			if time.Now().After(deadline) {
				b.Fatalf("building %s: the build limit passed", path)
			}
		}
		if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
	})
}

// writeBench writes the corpus in batches of size and reports the
// throughput. Batches of 500 are what the store and index roles get from
// the log under load (jetstream's FetchBatch).
func writeBench(b *testing.B, write func(context.Context, []chat.Message) error) {
	for _, size := range []int{100, 500} {
		b.Run("batch-"+strconv.Itoa(size), func(b *testing.B) {
			c := newCorpus()
			batch := make([]chat.Message, size)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				for j := range batch {
					batch[j] = c.message(i)
					i++
				}
				if err := write(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/msg")
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func BenchmarkWriteMessages(b *testing.B) {
	writeBench(b, openMessages(b, "").WriteMessages)
}

func BenchmarkIndexMessages(b *testing.B) {
	writeBench(b, openSearch(b, "").IndexMessages)
}

// percentiles reports p50 and p99 of the recorded durations as metrics.
func percentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(d[len(d)/2]), "p50-µs")
	b.ReportMetric(us(d[len(d)*99/100]), "p99-µs")
}

// asServed runs the garbage collector as chatd serve does (prio.GCPercent,
// unless GOGC is set) for the rest of b: a read's tail is mostly the
// collections during it, and a test binary would otherwise run them twice
// as often as the server (at 100). Counting 10,000 matches of a common word
// over 500 of 1,000 rooms, p99 of 50, three interleaved runs each: 59.3 ms
// mean at 100, 42.4 ms at 200, with the same p50.
func asServed(b *testing.B) {
	if os.Getenv("GOGC") != "" {
		return
	}
	old := debug.SetGCPercent(prio.GCPercent)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

func BenchmarkReadMessages(b *testing.B) {
	asServed(b)
	n := benchRows(b)
	m := openMessages(b, messagesDB(b, n))
	perRoom := n / benchRooms
	c := newCorpus()
	// A running server has read its rooms before: read each room's newest
	// page once, untimed, so the percentiles are of a warm process (its
	// connections' page caches and prepared statements), not of the first
	// queries after start.
	for room := 1; room <= benchRooms; room++ {
		if _, err := m.MessagesBefore(context.Background(), chat.ID(room), 0, 50); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("latest-50", func(b *testing.B) {
		r := rand.New(rand.NewPCG(5, 6))
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			msgs, err := m.MessagesBefore(context.Background(), chat.ID(1+r.IntN(benchRooms)), 0, 50)
			d = append(d, time.Since(start))
			if err != nil || len(msgs) != min(50, perRoom) {
				b.Fatalf("%d messages, %v", len(msgs), err)
			}
		}
		percentiles(b, d)
	})
	// A page further back: 50 before a random message of the room, as a
	// client scrolling up asks.
	b.Run("before-50", func(b *testing.B) {
		r := rand.New(rand.NewPCG(7, 8))
		var d []time.Duration
		for b.Loop() {
			i := r.IntN(n)
			room, before := chat.ID(1+i%benchRooms), c.message(i).ID
			start := time.Now()
			msgs, err := m.MessagesBefore(context.Background(), room, before, 50)
			d = append(d, time.Since(start))
			if err != nil || len(msgs) != min(50, i/benchRooms) {
				b.Fatalf("%d messages, %v", len(msgs), err)
			}
		}
		percentiles(b, d)
	})
}

func BenchmarkSearch(b *testing.B) {
	asServed(b)
	if s := os.Getenv("CHATD_BENCH_ROOMS_PER_QUERY"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sqlite.SetRoomsPerQuery(k))
	}
	n := benchRows(b)
	s := openSearch(b, searchDB(b, n))
	// A running server loaded its room cache seconds after it started;
	// time searches against that, as the page cache is warm too.
	start := time.Now()
	b.Logf("room cache: %d messages, loaded in %v", sqlite.WaitRoomCache(s), time.Since(start).Round(time.Millisecond))
	if os.Getenv("CHATD_BENCH_NO_ROOM_CACHE") != "" {
		sqlite.DropRoomCache(s)
	}
	words := vocabulary()
	roomSet := func(k int) []chat.ID {
		var out []chat.ID
		for i := range k {
			out = append(out, chat.ID(1+i*benchRooms/k))
		}
		return out
	}
	queries := []struct{ name, q string }{
		{"rare", words[5000]},
		{"common", words[10]},
		{"commonest", words[0]},
		{"two-words", words[20] + " " + words[40]},
		{"phrase", `"` + words[10] + " " + words[11] + `"`},
		{"prefix", words[300][:3] + "*"},
	}
	// One room (the search box inside a room), 50 rooms (a user's rooms),
	// 500 (many of many: several queries) and all 1,000 (every readable
	// room, which is what a search without a room filter sends).
	for _, rooms := range []int{1, 50, 500, benchRooms} {
		for _, qc := range queries {
			b.Run(fmt.Sprintf("%s-%d-rooms", qc.name, rooms), func(b *testing.B) {
				var d []time.Duration
				var total int64
				for b.Loop() {
					start := time.Now()
					res, err := s.Search(context.Background(), chat.SearchQuery{Text: qc.q, RoomIDs: roomSet(rooms), Limit: 20})
					d = append(d, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					total = res.Total
				}
				percentiles(b, d)
				b.ReportMetric(float64(total), "matches")
			})
		}
	}
}
