package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/sqlite"
)

// Benchmarks run against a corpus of benchRows() messages (env
// CHATD_BENCH_ROWS, default 200000) spread over benchRooms rooms. Building a
// corpus of millions takes minutes, so it is kept in the system temp dir
// and reused by later runs of the same size.
const benchRooms = 1000

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

type corpus struct {
	words []string
	zipf  *rand.Zipf
	r     *rand.Rand
	next  chat.ID
	base  time.Time
}

func newCorpus() *corpus {
	r := rand.New(rand.NewPCG(3, 4))
	words := vocabulary()
	return &corpus{words: words, r: r, zipf: rand.NewZipf(r, 1.1, 10, uint64(len(words)-1)),
		base: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// message i of the corpus: rooms round-robin, a millisecond apart.
func (c *corpus) message(i int) chat.Message {
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

func (c *corpus) fill(tb testing.TB, write func(context.Context, []chat.Message) error, n int) {
	tb.Helper()
	batch := make([]chat.Message, 0, 1000)
	for i := range n {
		batch = append(batch, c.message(i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := write(context.Background(), batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// cachedDB returns the path of a database of kind holding the corpus,
// building it on first use.
func cachedDB(b *testing.B, kind string, n int, build func(path string)) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), "chatd-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.db", kind, n))
	done := path + ".done"
	if _, err := os.Stat(done); err == nil {
		return path
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(p)
	}
	start := time.Now()
	build(path)
	b.Logf("built %s with %d messages in %v", path, n, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkWriteMessages(b *testing.B) {
	m := openMessages(b, "")
	c := newCorpus()
	batch := make([]chat.Message, 100)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		for j := range batch {
			batch[j] = c.message(i)
			i++
		}
		if err := m.WriteMessages(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/msg")
}

func BenchmarkIndexMessages(b *testing.B) {
	s := openSearch(b, "")
	c := newCorpus()
	batch := make([]chat.Message, 100)
	i := 0
	for b.Loop() {
		for j := range batch {
			batch[j] = c.message(i)
			i++
		}
		if err := s.IndexMessages(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/msg")
}

// percentiles reports p50 and p99 of the recorded durations as metrics.
func percentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkMessagesBefore(b *testing.B) {
	n := benchRows(b)
	path := cachedDB(b, "messages", n, func(path string) {
		m, err := sqlite.OpenMessages(context.Background(), path, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		newCorpus().fill(b, m.WriteMessages, n)
		m.Close()
	})
	m := openMessages(b, path)
	r := rand.New(rand.NewPCG(5, 6))
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		msgs, err := m.MessagesBefore(context.Background(), chat.ID(1+r.IntN(benchRooms)), 0, 50)
		d = append(d, time.Since(start))
		if err != nil || len(msgs) != min(50, n/benchRooms) {
			b.Fatalf("%d messages, %v", len(msgs), err)
		}
	}
	percentiles(b, d)
}

func BenchmarkSearch(b *testing.B) {
	n := benchRows(b)
	path := cachedDB(b, "search", n, func(path string) {
		s, err := sqlite.OpenSearch(context.Background(), path, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		newCorpus().fill(b, s.IndexMessages, n)
		s.Close()
	})
	s := openSearch(b, path)
	words := vocabulary()
	// A user who may read 50 of the rooms.
	var rooms []chat.ID
	for i := range 50 {
		rooms = append(rooms, chat.ID(1+i*benchRooms/50))
	}
	var allRooms []chat.ID
	for i := range benchRooms {
		allRooms = append(allRooms, chat.ID(1+i))
	}
	for _, tc := range []struct {
		name, q string
		rooms   []chat.ID
	}{
		{"rare", words[5000], rooms},
		{"common", words[10], rooms},
		{"two-words", words[20] + " " + words[40], rooms},
		{"phrase", `"` + words[10] + " " + words[11] + `"`, rooms},
		{"prefix", words[300][:3] + "*", rooms},
		{"rare-1000-rooms", words[5000], allRooms},
		{"common-1000-rooms", words[10], allRooms},
		{"two-words-1000-rooms", words[20] + " " + words[40], allRooms},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var d []time.Duration
			var total int64
			for b.Loop() {
				start := time.Now()
				res, err := s.Search(context.Background(), chat.SearchQuery{Text: tc.q, RoomIDs: tc.rooms, Limit: 20})
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
