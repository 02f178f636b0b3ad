package chattest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// SearchIndex runs the conformance suite of chat.SearchIndex. The index may
// be eventually consistent: the suite polls until what it indexed is visible
// (up to about ten seconds) before it asserts.
func SearchIndex(t *testing.T, open func(t *testing.T) chat.SearchIndex) {
	t.Run("History", func(t *testing.T) {
		s, ctx := open(t), ctxOf(t)
		base := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
		room, other := chat.ID(101), chat.ID(102)
		var all []chat.Message
		var batch []chat.Message
		for i := range 30 {
			m := messageAt(base.Add(time.Duration(i)*time.Minute), i, room, 1, fmt.Sprintf("history %d", i))
			all = append(all, m)
			batch = append(batch, m, messageAt(base.Add(time.Duration(i)*time.Minute), 100+i, other, 2, "other"))
		}
		// Indexed out of order and in two batches.
		slices.Reverse(batch)
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch[:20]))
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch[20:]))
		waitHistory(t, s, room, 30)

		page, err := s.History(ctx, chat.HistoryQuery{RoomID: room, Limit: 100})
		noErr(t, "History", err)
		checkMessages(t, "History all", page.Messages, all)
		if page.NextCursor != "" {
			t.Fatalf("History of everything has NextCursor %q", page.NextCursor)
		}

		// [From, To) is inclusive below and exclusive above.
		page, err = s.History(ctx, chat.HistoryQuery{RoomID: room, From: base.Add(5 * time.Minute), To: base.Add(12 * time.Minute), Limit: 100})
		noErr(t, "History range", err)
		checkMessages(t, "History [5m, 12m)", page.Messages, all[5:12])
		page, err = s.History(ctx, chat.HistoryQuery{RoomID: room, From: base.Add(25 * time.Minute), Limit: 100})
		noErr(t, "History from", err)
		checkMessages(t, "History [25m, )", page.Messages, all[25:])
		page, err = s.History(ctx, chat.HistoryQuery{RoomID: room, To: base.Add(2 * time.Minute), Limit: 100})
		noErr(t, "History to", err)
		checkMessages(t, "History [, 2m)", page.Messages, all[:2])
		page, err = s.History(ctx, chat.HistoryQuery{RoomID: chat.ID(999), Limit: 100})
		noErr(t, "History empty room", err)
		checkMessages(t, "History empty room", page.Messages, nil)

		// Paging: every message once, in order, and an empty cursor at the end.
		var got []chat.Message
		q := chat.HistoryQuery{RoomID: room, From: base.Add(3 * time.Minute), Limit: 7}
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatal("History paging does not end")
			}
			page, err := s.History(ctx, q)
			noErr(t, "History page", err)
			got = append(got, page.Messages...)
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
		}
		checkMessages(t, "History paged", got, all[3:])

		for _, c := range []string{"garbage", "!!!", strings.Repeat("A", 5000), "' OR 1=1 --", "\xff\xfe"} {
			_, err := s.History(ctx, chat.HistoryQuery{RoomID: room, Limit: 10, Cursor: c})
			wantCode(t, "History with cursor "+c[:min(len(c), 20)], err, chat.EINVALID)
		}
	})

	t.Run("HistoryBodies", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		var want []chat.Message
		for i, body := range trickyBodies {
			m := newMessage(g, room, chat.ID(i+1), body)
			if i%2 == 1 {
				m.Nonce = "n" + fmt.Sprint(i)
				e := m.CreatedAt.Add(time.Second)
				m.EditedAt = &e
			}
			want = append(want, m)
		}
		noErr(t, "IndexMessages", s.IndexMessages(ctx, want))
		// Indexing again, also with changed content, changes nothing.
		again := slices.Clone(want)
		again[0].Body = "changed"
		noErr(t, "IndexMessages again", s.IndexMessages(ctx, again))
		noErr(t, "IndexMessages empty", s.IndexMessages(ctx, nil))
		waitHistory(t, s, room, len(want))
		page, err := s.History(ctx, chat.HistoryQuery{RoomID: room, Limit: 100})
		noErr(t, "History", err)
		checkMessages(t, "bodies", page.Messages, want)
	})

	t.Run("Search", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		r1, r2, r3 := nextID(g), nextID(g), nextID(g)
		alice, bob := nextID(g), nextID(g)
		msgs := map[string]chat.Message{}
		var batch []chat.Message
		add := func(key string, room, user chat.ID, body string) {
			m := newMessage(g, room, user, body)
			msgs[key] = m
			batch = append(batch, m)
		}
		add("fox", r1, alice, "The quick brown fox jumps over the lazy dog")
		add("foxrev", r1, bob, "a brown dog and a quick fox")
		add("deploy", r1, alice, "Deploying the release tonight")
		add("deployed", r2, bob, "we deployed it yesterday")
		add("deploy2", r2, alice, "DEPLOY now!")
		add("xss", r2, bob, `<img src=x onerror=alert(1)> quick & "dirty"`)
		add("cafe", r3, alice, "Café au lait, s'il vous plaît 🎉")
		add("hebrew", r3, bob, "שלום עולם quick")
		add("emailish", r3, alice, "mail me at e-mail dot com")
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch))
		all := []chat.ID{r1, r2, r3}
		waitSearch(t, s, chat.SearchQuery{Text: "quick", RoomIDs: all, Limit: 50}, 4)

		for _, tc := range []struct {
			q     string
			rooms []chat.ID
			user  chat.ID
			want  []string
		}{
			{q: "quick", want: []string{"fox", "foxrev", "xss", "hebrew"}},
			{q: "QUICK fox", want: []string{"fox", "foxrev"}},
			{q: `"quick brown"`, want: []string{"fox"}},
			{q: `"brown quick"`, want: nil},
			{q: `"lazy dog" quick`, want: []string{"fox"}},
			{q: "deploy", want: []string{"deploy2"}},
			{q: "deploy*", want: []string{"deploy", "deployed", "deploy2"}},
			{q: "dep*", want: []string{"deploy", "deployed", "deploy2"}},
			{q: "café", want: []string{"cafe"}},
			{q: "CAFÉ plaît", want: []string{"cafe"}},
			{q: "עולם", want: []string{"hebrew"}},
			{q: "e-mail", want: []string{"emailish"}},
			{q: "img", want: []string{"xss"}},
			{q: "onerror", want: []string{"xss"}},
			{q: "nonexistentword", want: nil},
			{q: "quick nonexistentword", want: nil},
			{q: "quick", rooms: []chat.ID{r1}, want: []string{"fox", "foxrev"}},
			{q: "quick", rooms: []chat.ID{r2, r3}, want: []string{"xss", "hebrew"}},
			{q: "quick", rooms: []chat.ID{nextID(g)}, want: nil},
			{q: "quick", user: bob, want: []string{"foxrev", "xss", "hebrew"}},
			{q: "deploy*", rooms: []chat.ID{r2}, user: alice, want: []string{"deploy2"}},
		} {
			rooms := tc.rooms
			if rooms == nil {
				rooms = all
			}
			res, err := s.Search(ctx, chat.SearchQuery{Text: tc.q, RoomIDs: rooms, UserID: tc.user, Limit: 50})
			noErr(t, "Search "+tc.q, err)
			var want []chat.ID
			for _, k := range tc.want {
				want = append(want, msgs[k].ID)
			}
			got := hitIDs(res)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Search(%q, rooms %v, user %d) = %v, want %v", tc.q, rooms, tc.user, got, want)
			}
			if res.Total != int64(len(want)) || res.TotalRelation != chat.TotalEq {
				t.Errorf("Search(%q) Total = %d %q, want %d %q", tc.q, res.Total, res.TotalRelation, len(want), chat.TotalEq)
			}
			if res.NextCursor != "" {
				t.Errorf("Search(%q) with every hit on one page has NextCursor %q", tc.q, res.NextCursor)
			}
			terms, _ := chat.ParseSearch(tc.q)
			for _, h := range res.Hits {
				m := msgs[keyOf(msgs, h.Message.ID)]
				checkMessage(t, "hit", h.Message, m)
				if want := chat.Highlight(m.Body, terms); h.Highlight != want {
					t.Errorf("Search(%q) highlight %q, want %q", tc.q, h.Highlight, want)
				}
			}
		}

		// A long room list (a user in many rooms) filters the same way.
		many := []chat.ID{r2}
		for range 200 {
			many = append(many, nextID(g))
		}
		res, err := s.Search(ctx, chat.SearchQuery{Text: "quick", RoomIDs: many, Limit: 50})
		noErr(t, "Search many rooms", err)
		if got := hitIDs(res); len(got) != 1 || got[0] != msgs["xss"].ID || res.Total != 1 {
			t.Fatalf("Search in 201 rooms = %v (total %d), want [%d]", got, res.Total, msgs["xss"].ID)
		}

		// The rooms the caller may read are given; none means nothing.
		res, err = s.Search(ctx, chat.SearchQuery{Text: "quick", Limit: 50})
		noErr(t, "Search no rooms", err)
		if len(res.Hits) != 0 || res.Total != 0 {
			t.Fatalf("Search without rooms: %d hits, total %d", len(res.Hits), res.Total)
		}

		// Highlights escape the body: the markup in it never comes through.
		res, err = s.Search(ctx, chat.SearchQuery{Text: "onerror", RoomIDs: all, Limit: 50})
		noErr(t, "Search", err)
		if len(res.Hits) != 1 || strings.Contains(res.Hits[0].Highlight, "<img") ||
			!strings.Contains(res.Hits[0].Highlight, "<mark>onerror</mark>") {
			t.Fatalf("highlight of markup: %+v", res.Hits)
		}
	})

	t.Run("TimeRange", func(t *testing.T) {
		s, ctx := open(t), ctxOf(t)
		base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		room := chat.ID(7)
		var batch []chat.Message
		for i := range 10 {
			batch = append(batch, messageAt(base.Add(time.Duration(i)*time.Hour), i, room, 1, fmt.Sprintf("tick %d", i)))
		}
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch))
		waitSearch(t, s, chat.SearchQuery{Text: "tick", RoomIDs: []chat.ID{room}, Limit: 50}, 10)
		res, err := s.Search(ctx, chat.SearchQuery{Text: "tick", RoomIDs: []chat.ID{room}, From: base.Add(2 * time.Hour), To: base.Add(5 * time.Hour), Limit: 50})
		noErr(t, "Search range", err)
		got := hitIDs(res)
		slices.Sort(got)
		if want := ids(batch[2:5]); !slices.Equal(got, want) || res.Total != 3 {
			t.Fatalf("Search [2h, 5h) = %v (total %d), want %v", got, res.Total, want)
		}
		res, err = s.Search(ctx, chat.SearchQuery{Text: "tick", RoomIDs: []chat.ID{room}, From: base.Add(8 * time.Hour), Limit: 50})
		noErr(t, "Search from", err)
		if got := hitIDs(res); len(got) != 2 {
			t.Fatalf("Search [8h, ) = %v, want 2 hits", got)
		}
	})

	// IDs carry milliseconds only; a range must still be exact to the
	// nanosecond, also when its bound falls inside a millisecond that holds
	// several messages.
	t.Run("TimeRangeWithinMillisecond", func(t *testing.T) {
		s, ctx := open(t), ctxOf(t)
		base := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
		room := chat.ID(8)
		var batch []chat.Message
		for i := range 4 {
			// 0.0, 0.2, 0.4, 0.6 ms: one millisecond, four messages.
			batch = append(batch, messageAt(base.Add(time.Duration(i)*200*time.Microsecond), i, room, 1, fmt.Sprintf("micro %d", i)))
		}
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch))
		waitSearch(t, s, chat.SearchQuery{Text: "micro", RoomIDs: []chat.ID{room}, Limit: 50}, 4)
		from, to := batch[1].CreatedAt, batch[3].CreatedAt
		page, err := s.History(ctx, chat.HistoryQuery{RoomID: room, From: from, To: to, Limit: 50})
		noErr(t, "History", err)
		if got, want := ids(page.Messages), ids(batch[1:3]); !slices.Equal(got, want) {
			t.Fatalf("History [0.2ms, 0.6ms) = %v, want %v", got, want)
		}
		res, err := s.Search(ctx, chat.SearchQuery{Text: "micro", RoomIDs: []chat.ID{room}, From: from, To: to, Limit: 50})
		noErr(t, "Search", err)
		got := hitIDs(res)
		slices.Sort(got)
		if want := ids(batch[1:3]); !slices.Equal(got, want) {
			t.Fatalf("Search [0.2ms, 0.6ms) = %v, want %v", got, want)
		}
	})

	t.Run("Relevance", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		once := newMessage(g, room, 1, "kiwi plum")
		twice := newMessage(g, room, 1, "kiwi kiwi")
		batch := []chat.Message{once, twice}
		for i := range 8 {
			batch = append(batch, newMessage(g, room, 1, fmt.Sprintf("filler %d plum", i)))
		}
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch))
		res := waitSearch(t, s, chat.SearchQuery{Text: "kiwi", RoomIDs: []chat.ID{room}, Limit: 10}, 2)
		if got := hitIDs(res); got[0] != twice.ID {
			t.Fatalf("Search kiwi = %v: the message with the word twice (%d) should rank first", got, twice.ID)
		}
		if want := "<mark>kiwi</mark> <mark>kiwi</mark>"; res.Hits[0].Highlight != want {
			t.Fatalf("highlight %q, want %q", res.Hits[0].Highlight, want)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		r1, r2 := nextID(g), nextID(g)
		var batch []chat.Message
		want := map[chat.ID]bool{}
		for i := range 25 {
			m := newMessage(g, []chat.ID{r1, r2}[i%2], 1, fmt.Sprintf("needle %s %d", strings.Repeat("hay ", i%5), i))
			batch = append(batch, m)
			want[m.ID] = true
		}
		batch = append(batch, newMessage(g, r1, 1, "no match here"))
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch[:13]))
		noErr(t, "IndexMessages", s.IndexMessages(ctx, batch[13:]))
		q := chat.SearchQuery{Text: "needle", RoomIDs: []chat.ID{r1, r2}, Limit: 10}
		waitSearch(t, s, q, 25)
		seen := map[chat.ID]bool{}
		var sizes []int
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatal("Search paging does not end")
			}
			res, err := s.Search(ctx, q)
			noErr(t, "Search page", err)
			if res.Total != 25 || res.TotalRelation != chat.TotalEq {
				t.Fatalf("page %d Total = %d %q, want 25 %q", i, res.Total, res.TotalRelation, chat.TotalEq)
			}
			sizes = append(sizes, len(res.Hits))
			for _, h := range res.Hits {
				if seen[h.Message.ID] {
					t.Fatalf("page %d repeats message %d", i, h.Message.ID)
				}
				seen[h.Message.ID] = true
			}
			if res.NextCursor == "" {
				break
			}
			q.Cursor = res.NextCursor
		}
		if len(seen) != 25 {
			t.Fatalf("paging returned %d distinct messages (pages %v), want 25", len(seen), sizes)
		}
		for id := range seen {
			if !want[id] {
				t.Fatalf("paging returned message %d, which does not match", id)
			}
		}
	})

	// Counting stops at chat.MaxSearchTotal, as Elasticsearch's
	// track_total_hits does by default; paging still reaches that depth.
	t.Run("TotalCap", func(t *testing.T) {
		s, ctx := open(t), ctxOf(t)
		base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
		room, other := chat.ID(9), chat.ID(10)
		n := chat.MaxSearchTotal + 1
		var batch []chat.Message
		for i := range n {
			// One message a millisecond, so a time range picks an exact
			// number of them.
			batch = append(batch, messageAt(base.Add(time.Duration(i)*time.Millisecond), 0, room, 1, fmt.Sprintf("crowd %d", i)))
		}
		batch = append(batch, messageAt(base, 1, other, 1, "crowd elsewhere"))
		for part := range slices.Chunk(batch, 1000) {
			noErr(t, "IndexMessages", s.IndexMessages(ctx, part))
		}
		q := chat.SearchQuery{Text: "crowd", RoomIDs: []chat.ID{room}, Limit: chat.MaxPageLimit}
		var res chat.SearchResult
		eventually(t, "Search crowd is capped", func() (bool, string) {
			var err error
			res, err = s.Search(ctx, q)
			noErr(t, "Search", err)
			return res.Total == chat.MaxSearchTotal && res.TotalRelation == chat.TotalGte,
				fmt.Sprintf("total %d %q", res.Total, res.TotalRelation)
		})
		for _, tc := range []struct {
			name     string
			q        chat.SearchQuery
			total    int64
			relation string
		}{
			{"exactly the cap", chat.SearchQuery{Text: "crowd", RoomIDs: []chat.ID{room}, To: base.Add(time.Duration(chat.MaxSearchTotal) * time.Millisecond)}, chat.MaxSearchTotal, chat.TotalEq},
			{"one past the cap", chat.SearchQuery{Text: "crowd", RoomIDs: []chat.ID{room}, From: base}, chat.MaxSearchTotal, chat.TotalGte},
			{"both rooms", chat.SearchQuery{Text: "crowd", RoomIDs: []chat.ID{room, other}}, chat.MaxSearchTotal, chat.TotalGte},
			{"the other room", chat.SearchQuery{Text: "crowd", RoomIDs: []chat.ID{other}}, 1, chat.TotalEq},
			{"one message", chat.SearchQuery{Text: "crowd 1234", RoomIDs: []chat.ID{room}}, 1, chat.TotalEq},
		} {
			tc.q.Limit = 10
			got, err := s.Search(ctx, tc.q)
			noErr(t, "Search "+tc.name, err)
			if got.Total != tc.total || got.TotalRelation != tc.relation {
				t.Errorf("Search %s: total %d %q, want %d %q", tc.name, got.Total, got.TotalRelation, tc.total, tc.relation)
			}
		}

		// Paging goes as deep as the count: every page says the same,
		// and the last cursor is at the cap.
		seen := map[chat.ID]bool{}
		for page := 0; ; page++ {
			if page > chat.MaxSearchTotal/chat.MaxPageLimit {
				t.Fatal("Search paging does not end at the cap")
			}
			if res.Total != chat.MaxSearchTotal || res.TotalRelation != chat.TotalGte {
				t.Fatalf("page %d: total %d %q", page, res.Total, res.TotalRelation)
			}
			for _, h := range res.Hits {
				if seen[h.Message.ID] || h.Message.RoomID != room {
					t.Fatalf("page %d: hit %d repeated or from room %d", page, h.Message.ID, h.Message.RoomID)
				}
				seen[h.Message.ID] = true
			}
			if res.NextCursor == "" {
				break
			}
			q.Cursor = res.NextCursor
			var err error
			res, err = s.Search(ctx, q)
			noErr(t, "Search page", err)
		}
		if len(seen) != chat.MaxSearchTotal {
			t.Fatalf("paging a capped result found %d messages, want %d", len(seen), chat.MaxSearchTotal)
		}
	})

	t.Run("Idempotent", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		m := newMessage(g, room, 1, "unique walrus")
		noErr(t, "IndexMessages", s.IndexMessages(ctx, []chat.Message{m, m}))
		noErr(t, "IndexMessages again", s.IndexMessages(ctx, []chat.Message{m}))
		waitHistory(t, s, room, 1)
		res, err := s.Search(ctx, chat.SearchQuery{Text: "walrus", RoomIDs: []chat.ID{room}, Limit: 10})
		noErr(t, "Search", err)
		if len(res.Hits) != 1 || res.Total != 1 {
			t.Fatalf("message indexed three times: %d hits, total %d", len(res.Hits), res.Total)
		}
	})

	t.Run("HostileInput", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		noErr(t, "IndexMessages", s.IndexMessages(ctx, []chat.Message{newMessage(g, room, 1, `and or not near "x" col:val * ^ - ( ) {}`)}))
		waitHistory(t, s, room, 1)
		queries := []string{
			"", " ", `"`, `""`, `"""`, "*", "**", "a*b", "-x", "+x", "x:", "col:val", "^x", "NEAR(a b)", "NEAR(a, b, 10)",
			"a AND", "OR", "NOT x", "a OR b", "(a", ")", "{a}", "[a]", "a\\", `\"`, "'", "' OR 1=1 --", "%", "_",
			"\x00", "\xff\xfe", "a\x00b", "🎉", "e\u0301", strings.Repeat("a ", 300), strings.Repeat("x", chat.MaxSearchLen+1),
			strings.Repeat("w ", 17), `"unterminated phrase`, "near", "and", "col:val*", "*:*", "a:*", "?", "~1", "a^2",
			"{{", "$(rm -rf /)", "<script>", "AND OR NOT NEAR", "x* y* z*",
		}
		for _, qs := range queries {
			res, err := s.Search(ctx, chat.SearchQuery{Text: qs, RoomIDs: []chat.ID{room}, Limit: 10})
			if code := chat.ErrorCode(err); code != "" && code != chat.EINVALID {
				t.Errorf("Search(%.40q): %v (code %s), want a result or %s", qs, err, code, chat.EINVALID)
			}
			_ = res
		}
		for _, c := range []string{"garbage", "!!!", strings.Repeat("A", 5000), "' OR 1=1 --", "\xff", "-1"} {
			_, err := s.Search(ctx, chat.SearchQuery{Text: "near", RoomIDs: []chat.ID{room}, Limit: 10, Cursor: c})
			wantCode(t, "Search with cursor "+c[:min(len(c), 20)], err, chat.EINVALID)
		}
		// Words that are operators elsewhere are plain words here.
		res, err := s.Search(ctx, chat.SearchQuery{Text: "and or not near col val", RoomIDs: []chat.ID{room}, Limit: 10})
		noErr(t, "Search operator words", err)
		if len(res.Hits) != 1 {
			t.Fatalf("operator words as text: %d hits, want 1", len(res.Hits))
		}
	})
}

func hitIDs(res chat.SearchResult) []chat.ID {
	out := []chat.ID{}
	for _, h := range res.Hits {
		out = append(out, h.Message.ID)
	}
	return out
}

func keyOf(msgs map[string]chat.Message, id chat.ID) string {
	for k, m := range msgs {
		if m.ID == id {
			return k
		}
	}
	return ""
}

// waitHistory waits until the room's history holds n messages.
func waitHistory(tb testing.TB, s chat.SearchIndex, room chat.ID, n int) {
	tb.Helper()
	ctx := ctxOf(tb)
	eventually(tb, "indexed messages visible in History", func() (bool, string) {
		page, err := s.History(ctx, chat.HistoryQuery{RoomID: room, Limit: chat.MaxPageLimit})
		if err != nil {
			tb.Fatalf("History: %v", err)
		}
		return len(page.Messages) == n, fmt.Sprintf("%d of %d messages", len(page.Messages), n)
	})
}

// waitSearch waits until q finds n messages in all and returns the result.
func waitSearch(tb testing.TB, s chat.SearchIndex, q chat.SearchQuery, n int) chat.SearchResult {
	tb.Helper()
	ctx := ctxOf(tb)
	var res chat.SearchResult
	eventually(tb, fmt.Sprintf("Search %q finds %d", q.Text, n), func() (bool, string) {
		var err error
		res, err = s.Search(ctx, q)
		if err != nil {
			tb.Fatalf("Search: %v", err)
		}
		return len(res.Hits) == min(n, q.Limit) && res.Total == int64(n), fmt.Sprintf("%d hits, total %d", len(res.Hits), res.Total)
	})
	return res
}
