package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/migrations"
	"github.com/chatd/chatd/pkg/chat"
)

func TestMigrationsOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for range 2 {
		a, err := OpenAccounts(ctx, filepath.Join(dir, "a.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := a.db.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("schema_migrations has %d rows, want 1", n)
		}
		var mode string
		var sync, fk int
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != 1 || fk != 1 {
			t.Fatalf("journal_mode %s synchronous %d foreign_keys %d, want wal 1 1", mode, sync, fk)
		}
		// Readers must not write, so a bug cannot take the writer's lock.
		if _, err := a.db.r.ExecContext(ctx, `DELETE FROM users`); err == nil {
			t.Fatal("a reader connection could write")
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWordsExpr(t *testing.T) {
	for q, want := range map[string]string{
		`hello`:                   `"hello"`,
		`Hello World`:             `"hello" AND "world"`,
		`"quick brown" fox*`:      `"quick brown" AND "fox"*`,
		`NEAR(a b) AND -c d:e ^f`: `"near a" AND "b" AND "and" AND "c" AND "d e" AND "f"`,
		`"unbalanced * phrase`:    `"unbalanced phrase"`,
		`e-mai*`:                  `"e mai"*`,
	} {
		terms, err := chat.ParseSearch(q)
		if err != nil {
			t.Fatal(err)
		}
		if got := wordsExpr(terms); got != want {
			t.Errorf("wordsExpr(%q) = %s, want %s", q, got, want)
		}
	}
}

func TestBadPath(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenMessages(ctx, "", nil); err == nil {
		t.Fatal("empty path opened")
	}
	if _, err := OpenSearch(ctx, filepath.Join(t.TempDir(), "missing", "dir", "s.db"), nil); err == nil {
		t.Fatal("path in a missing directory opened")
	}
}

// A search index made by an older chatd (schema version 2: messages_fts
// and docs) is upgraded in place by migration 0003, and search finds its old
// messages by word, phrase, prefix, room and author, beside new ones.
func TestSearchUpgradeFromVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"sqlite/search_0001_init.sql", "sqlite/search_0002_docs.sql"} {
		body, err := fs.ReadFile(migrations.SQLite, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.ExecContext(ctx, string(body)); err != nil {
			t.Fatal(err)
		}
		if _, err := old.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, v+1, name); err != nil {
			t.Fatal(err)
		}
	}
	oldMsgs := []chat.Message{
		{ID: 1 << 30, RoomID: 5, UserID: 6, Username: "u", Body: "Upgraded words, quick brown fox"},
		{ID: 2 << 30, RoomID: 7, UserID: 8, Username: "v", Body: "upgraded in another room"},
		{ID: 3 << 30, RoomID: 5, UserID: 8, Username: "v", Body: "brown quick"},
	}
	// What IndexMessages wrote at version 2.
	for _, m := range oldMsgs {
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO messages (id, room_id, user_id, username, body, created_at) VALUES (?, ?, ?, ?, ?, 0)`,
				[]any{int64(m.ID), int64(m.RoomID), int64(m.UserID), m.Username, m.Body}},
			{`INSERT INTO messages_fts (rowid, words) VALUES (?, ?)`, []any{int64(m.ID), strings.Join(chat.SearchWords(m.Body), " ")}},
			{`INSERT INTO docs (id, room_id, user_id) VALUES (?, ?, ?)`, []any{int64(m.ID), int64(m.RoomID), int64(m.UserID)}},
		} {
			if _, err := old.ExecContext(ctx, q.sql, q.args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSearch(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.db.r.QueryRowContext(ctx, `SELECT count(*) FROM messages_fts`).Scan(new(int)); err == nil {
		t.Error("the old full-text table is still there")
	}
	// A room indexed after the upgrade gets the next room number.
	fresh := chat.Message{ID: 4 << 30, RoomID: 9, UserID: 6, Username: "u", Body: "upgraded later"}
	if err := s.IndexMessages(ctx, []chat.Message{fresh}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q     string
		rooms []chat.ID
		user  chat.ID
		want  []chat.ID
	}{
		{"upgraded", []chat.ID{5, 7, 9}, 0, []chat.ID{fresh.ID, oldMsgs[1].ID, oldMsgs[0].ID}},
		{"upgraded", []chat.ID{5}, 0, []chat.ID{oldMsgs[0].ID}},
		{"upgraded", []chat.ID{5, 7, 9}, 6, []chat.ID{fresh.ID, oldMsgs[0].ID}},
		{"upgraded", []chat.ID{7, 9}, 0, []chat.ID{fresh.ID, oldMsgs[1].ID}},
		{`"quick brown"`, []chat.ID{5, 7}, 0, []chat.ID{oldMsgs[0].ID}},
		{"quick brown", []chat.ID{5}, 0, []chat.ID{oldMsgs[2].ID, oldMsgs[0].ID}},
		{"upg*", []chat.ID{5, 7}, 8, []chat.ID{oldMsgs[1].ID}},
	} {
		res, err := s.Search(ctx, chat.SearchQuery{Text: tc.q, RoomIDs: tc.rooms, UserID: tc.user, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []chat.ID
		for _, h := range res.Hits {
			got = append(got, h.Message.ID)
		}
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) || res.Total != int64(len(want)) {
			t.Errorf("Search(%q, rooms %v, user %d) = %v (total %d), want %v", tc.q, tc.rooms, tc.user, got, res.Total, want)
		}
	}
}

// indexNeedles indexes n messages, message i in room 100+i%rooms by user
// 1+i%2 with body(i), in batches of size, and returns them.
func indexNeedles(t *testing.T, s *Search, n, rooms, size int, body func(i int) string) []chat.Message {
	t.Helper()
	var msgs []chat.Message
	for i := range n {
		msgs = append(msgs, chat.Message{ID: chat.ID(1+i) << 22, RoomID: chat.ID(100 + i%rooms), UserID: chat.ID(1 + i%2), Username: "u", Body: body(i)})
	}
	for part := range slices.Chunk(msgs, size) {
		if err := s.IndexMessages(context.Background(), part); err != nil {
			t.Fatal(err)
		}
	}
	return msgs
}

// openTestSearch opens a search index in a temporary directory, closed when
// the test ends.
func openTestSearch(t *testing.T) *Search {
	t.Helper()
	s, err := OpenSearch(context.Background(), filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// roomRange is the rooms indexNeedles numbers from to to.
func roomRange(from, to int) []chat.ID {
	var out []chat.ID
	for r := from; r < to; r++ {
		out = append(out, chat.ID(100+r))
	}
	return out
}

// Search takes one of several query shapes by how many rooms are asked for
// and how many are not (see matchExprs); each must find exactly the matches
// in the rooms asked for, and paging must cross the ranked window.
func TestSearchRoomShapes(t *testing.T) {
	ctx := context.Background()
	s := openTestSearch(t)
	rooms := 3 * roomsPerQuery
	n := rankWindow + 3*rooms
	msgs := indexNeedles(t, s, n, rooms, 500, func(i int) string {
		if i%3 == 0 {
			return "needle needle"
		}
		return "needle hay"
	})
	for _, tc := range []struct {
		name  string
		rooms []chat.ID
		user  chat.ID
	}{
		{"all", roomRange(0, rooms), 0},
		{"all and more", append(roomRange(0, rooms), 5, 6), 0},
		{"one", roomRange(7, 8), 0},
		{"few", roomRange(0, roomsPerQuery), 0},
		{"all but few", roomRange(3, rooms), 0},
		{"all but few by author", roomRange(3, rooms), 2},
		{"many of many", roomRange(0, rooms-roomsPerQuery-1), 0},
		{"many of many, scattered", append(roomRange(0, roomsPerQuery/2+1), roomRange(rooms-roomsPerQuery, rooms)...), 0},
		{"many of many by author", roomRange(0, rooms-roomsPerQuery-1), 1},
	} {
		for _, probe := range []bool{true, false} {
			for _, cache := range []string{"warm", "partial", "cold"} {
				name := tc.name
				if !probe {
					// Every shape, however few the matches.
					name += ", no probe"
				}
				// The room cache answers what it holds and docs the rest:
				// every state gives the same results.
				name += ", " + cache + " room cache"
				t.Run(name, func(t *testing.T) {
					setRoomCache(t, s, msgs, cache)
					if !probe {
						old := fewMatches
						fewMatches = 0
						defer func() { fewMatches = old }()
					}
					want := map[chat.ID]bool{}
					var newest []chat.Message
					for _, m := range slices.Backward(msgs) {
						if slices.Contains(tc.rooms, m.RoomID) && (tc.user == 0 || m.UserID == tc.user) {
							want[m.ID] = true
							newest = append(newest, m)
						}
					}
					// The ranked window puts the better matches of the newest
					// first.
					doubles := 0
					for _, m := range newest[:min(rankWindow, len(newest))] {
						if m.Body == "needle needle" {
							doubles++
						}
					}
					q := chat.SearchQuery{Text: "needle", RoomIDs: tc.rooms, UserID: tc.user, Limit: 200}
					seen := map[chat.ID]bool{}
					var pos int
					for page := 0; ; page++ {
						res, err := s.Search(ctx, q)
						if err != nil {
							t.Fatal(err)
						}
						if res.Total != int64(len(want)) {
							t.Fatalf("page %d: Total %d, want %d", page, res.Total, len(want))
						}
						for _, h := range res.Hits {
							if !want[h.Message.ID] || seen[h.Message.ID] {
								t.Fatalf("page %d: hit %d unwanted or repeated", page, h.Message.ID)
							}
							seen[h.Message.ID] = true
							if (pos < doubles) != (h.Message.Body == "needle needle") && pos < rankWindow {
								t.Fatalf("hit %d at %d is %q, want the better match first", h.Message.ID, pos, h.Message.Body)
							}
							pos++
						}
						if res.NextCursor == "" {
							break
						}
						q.Cursor = res.NextCursor
					}
					if len(seen) != len(want) {
						t.Fatalf("paging found %d of %d", len(seen), len(want))
					}
				})
			}
		}
	}
}

// setRoomCache puts s's room cache in a state: "warm" holds every message
// of msgs, "partial" every other one, "cold" none.
func setRoomCache(t *testing.T, s *Search, msgs []chat.Message, state string) {
	t.Helper()
	<-s.rc.done // the loader would otherwise overwrite the state
	s.mu.Lock()
	var entries []roomEntry
	for i, m := range msgs {
		n, ok := s.rooms[m.RoomID]
		if !ok {
			s.mu.Unlock()
			t.Fatalf("room %d has no number", m.RoomID)
		}
		if state == "warm" || state == "partial" && i%2 == 0 {
			entries = append(entries, roomEntry{int64(m.ID), uint32(n)})
		}
	}
	s.mu.Unlock()
	s.rc.mu.Lock()
	s.rc.snap.Store(&roomSnap{})
	s.rc.mu.Unlock()
	s.rc.add(entries)
	if got := s.rc.snap.Load().len(); got != len(entries) {
		t.Fatalf("room cache holds %d, want %d", got, len(entries))
	}
}

// Every query shape counts matches only up to chat.MaxSearchTotal: past
// it, Total is the cap and TotalRelation says "gte"; below it the count is
// exact. A capped result still pages to the cap.
func TestSearchTotalCap(t *testing.T) {
	ctx := context.Background()
	s := openTestSearch(t)
	defer func(old int) { roomsPerQuery = old }(roomsPerQuery)
	roomsPerQuery = 2
	const rooms, n = 10, chat.MaxSearchTotal * 3 / 2
	indexNeedles(t, s, n, rooms, 1000, func(int) string { return "needle hay" })
	for _, tc := range []struct {
		name     string
		rooms    []chat.ID
		user     chat.ID
		total    int64
		relation string
		page     bool
	}{
		{"all", roomRange(0, rooms), 0, chat.MaxSearchTotal, chat.TotalGte, false},
		{"all by author", roomRange(0, rooms), 1, n / 2, chat.TotalEq, false},
		{"few", roomRange(0, 2), 0, n / 5, chat.TotalEq, true},
		{"all but few", roomRange(2, rooms), 0, chat.MaxSearchTotal, chat.TotalGte, true},
		{"many of many, over", roomRange(0, 7), 0, chat.MaxSearchTotal, chat.TotalGte, true},
		{"many of many, under", roomRange(0, 6), 0, n * 6 / 10, chat.TotalEq, false},
		{"many of many, probed", roomRange(0, 5), 0, n / 2, chat.TotalEq, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := chat.SearchQuery{Text: "needle", RoomIDs: tc.rooms, UserID: tc.user, Limit: chat.MaxPageLimit}
			res, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if res.Total != tc.total || res.TotalRelation != tc.relation {
				t.Fatalf("total %d %q, want %d %q", res.Total, res.TotalRelation, tc.total, tc.relation)
			}
			if !tc.page {
				return
			}
			seen := map[chat.ID]bool{}
			for page := 0; ; page++ {
				if res.Total != tc.total || res.TotalRelation != tc.relation {
					t.Fatalf("page %d: total %d %q", page, res.Total, res.TotalRelation)
				}
				for _, h := range res.Hits {
					if seen[h.Message.ID] || !slices.Contains(tc.rooms, h.Message.RoomID) {
						t.Fatalf("page %d: hit %d repeated or in room %d", page, h.Message.ID, h.Message.RoomID)
					}
					seen[h.Message.ID] = true
				}
				if res.NextCursor == "" {
					break
				}
				q.Cursor = res.NextCursor
				if res, err = s.Search(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if int64(len(seen)) != tc.total {
				t.Fatalf("paging found %d, want %d", len(seen), tc.total)
			}
		})
	}
}

// A search cursor carries the first page's count, so later pages show the
// same total without counting again; a cursor from before it did (offset
// and snapshot only) still pages, and a tampered count is refused.
func TestSearchCursorCarriesTotal(t *testing.T) {
	ctx := context.Background()
	s := openTestSearch(t)
	msgs := indexNeedles(t, s, 30, 1, 30, func(int) string { return "needle" })
	upTo := int64(msgs[len(msgs)-1].ID)
	q := chat.SearchQuery{Text: "needle", RoomIDs: roomRange(0, 1), Limit: 10}
	first, err := s.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if first.Total != 30 || first.NextCursor != encodeCursor("s", 10, upTo, 30, 0) {
		t.Fatalf("first page: total %d, cursor %q", first.Total, first.NextCursor)
	}
	for _, tc := range []struct {
		name, cursor string
		total        int64
		relation     string
	}{
		{"carried", encodeCursor("s", 10, upTo, 30, 0), 30, chat.TotalEq},
		// Only the count can tell these apart from the real one: it is
		// taken from the cursor, not counted again.
		{"carried gte", encodeCursor("s", 10, upTo, chat.MaxSearchTotal, 1), chat.MaxSearchTotal, chat.TotalGte},
		{"older version", encodeCursor("s", 10, upTo), 30, chat.TotalEq},
	} {
		q.Cursor = tc.cursor
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Total != tc.total || res.TotalRelation != tc.relation || len(res.Hits) != 10 || res.Hits[0].Message.ID != msgs[19].ID {
			t.Fatalf("%s: total %d %q, %d hits", tc.name, res.Total, res.TotalRelation, len(res.Hits))
		}
	}
	for _, c := range []string{
		encodeCursor("s", 10, upTo, 30, 2),
		encodeCursor("s", 10, upTo, chat.MaxSearchTotal+1, 1),
		encodeCursor("s", 10, upTo, 30),
		encodeCursor("s", 10, upTo, 30, 0, 1),
		encodeCursor("h", 10, upTo, 30, 0),
	} {
		q.Cursor = c
		if _, err := s.Search(ctx, q); chat.ErrorCode(err) != chat.EINVALID {
			t.Fatalf("cursor %q: %v, want invalid", c, err)
		}
	}
}

// The checkpointer copies committed pages into the database file soon after
// a write, woken by the writer's commit rather than by polling: the file
// grows within a few checkpointEvery, well before the idle backstop
// (checkpointIdle, 10 s) would run one.
func TestCheckpointFollowsCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.db")
	ctx := context.Background()
	m, err := OpenMessages(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// Let the migration's checkpoint pass first.
	time.Sleep(500 * time.Millisecond)
	before := size()
	msgs := make([]chat.Message, 2000)
	for i := range msgs {
		msgs[i] = chat.Message{ID: chat.ID(i + 1), RoomID: chat.ID(i%50 + 1), UserID: 1, Username: "u",
			Body: strings.Repeat("checkpoint me ", 20), CreatedAt: time.Unix(1700000000, 0)}
	}
	if err := m.WriteMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); size() <= before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes 5 s after the write: no checkpoint", size())
		}
	}
}
