package redis

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// The cost of AddRecent in embedded mode per message: batches of 16 over 4
// rooms, in ID order, as a busy ingest flushes them, with the default
// window (chat.MaxSinceReplay per room), so the windows are full and
// trimmed as they go.
func BenchmarkAddRecent(b *testing.B) {
	const batchLen, rooms = 16, 4
	ctx := context.Background()
	c := openEmbedded(b, Config{Prefix: "chatd:"})
	batch := make([]chat.Message, batchLen)
	n := 0
	fill := func() {
		for j := range batch {
			n++
			batch[j] = msg(int64(n), int64(1+j%rooms), int64(n%1000), "", "hello world")
		}
	}
	for range 2 * chat.MaxSinceReplay / batchLen * rooms { // fill the windows
		fill()
		if err := c.AddRecent(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	batches := 0
	for b.Loop() {
		fill()
		if err := c.AddRecent(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batches++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(batches*batchLen), "ns/msg")
}

// The cost of RecentAfter in embedded mode on a full default window:
// tail16 reads the newest 16 (a client rejoining after a short gap), all
// the whole window (a join with since older than the window).
func BenchmarkRecentAfter(b *testing.B) {
	ctx := context.Background()
	c := openEmbedded(b, Config{Prefix: "chatd:"})
	const total = chat.MaxSinceReplay + 100
	for i := int64(1); i <= total; i += 10 {
		var batch []chat.Message
		for j := i; j < i+10 && j <= total; j++ {
			batch = append(batch, msg(j, 1, j%1000, "", "hello world"))
		}
		if err := c.AddRecent(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		after chat.ID
		want  int
	}{{"tail16", total - 16, 16}, {"all", 0, chat.MaxSinceReplay}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := c.RecentAfter(ctx, 1, bc.after)
				if err != nil || len(got) < bc.want {
					b.Fatalf("got %d, %v; want %d", len(got), err, bc.want)
				}
			}
		})
	}
}

func ids(ms []chat.Message) []chat.ID {
	out := make([]chat.ID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// The embedded cache never writes a window to miniredis, nor tracks one
// for expiry there.
func TestRecentWindowNotInMiniredis(t *testing.T) {
	ctx := context.Background()
	c := openEmbedded(t, Config{Prefix: "native:", RecentPerRoom: 5})
	for i := int64(1); i <= 40; i++ {
		if err := c.AddRecent(ctx, []chat.Message{msg(i, 1+i%4, 1, "", "m"), msg(1000+i, 7, 1, "", "m")}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := c.RecentAfter(ctx, 7, 0); fmt.Sprint(ids(got)) != "[1036 1037 1038 1039 1040]" {
		t.Fatalf("window %v", ids(got))
	}
	if keys := c.mini.Keys(); len(keys) != 0 {
		t.Fatalf("miniredis keys %q, want none", keys)
	}
	if n := c.exp.len(); n != 0 {
		t.Fatalf("the tracker tracks %d keys, want 0", n)
	}
	if n := c.recent.len(); n != 5 {
		t.Fatalf("the table holds %d rooms, want 5", n)
	}
}

// A window expires RecentTTL after its room's last add on the tracker's
// clock: it reads as empty at once, is gone from the table after the next
// sweep, and an add before that sweep starts it over.
func TestRecentWindowExpires(t *testing.T) {
	ctx := context.Background()
	c := openEmbedded(t, Config{Prefix: "exp:", RecentPerRoom: 5, RecentTTL: time.Minute})
	clk := useFakeClock(c)
	t0 := clk.now()
	at := func(d time.Duration) { clk.set(t0.Add(d)) }
	read := func(room chat.ID) ([]chat.ID, []chat.ID) {
		t.Helper()
		a, err := c.RecentAfter(ctx, room, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.RecentBefore(ctx, room, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ids(a), ids(b)
	}
	add := func(ms ...chat.Message) {
		t.Helper()
		if err := c.AddRecent(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	add(msg(1, 1, 1, "", "a"), msg(2, 2, 1, "", "b"), msg(3, 3, 1, "", "c"))
	at(30 * time.Second)
	add(msg(4, 2, 1, "", "d"))
	at(time.Minute)
	a1, b1 := read(1)
	a2, _ := read(2)
	if len(a1) != 0 || len(b1) != 0 || fmt.Sprint(a2) != "[2 4]" || c.recent.len() != 3 {
		t.Fatalf("at +1m: room 1 %v %v, room 2 %v, %d rooms; want room 1 empty before the sweep, room 2 [2 4], 3 rooms", a1, b1, a2, c.recent.len())
	}
	// Room 3 expired but is not swept yet: an add starts it over.
	add(msg(5, 3, 1, "", "e"))
	if a3, _ := read(3); fmt.Sprint(a3) != "[5]" {
		t.Fatalf("room 3 after an add past its ttl: %v, want [5]", a3)
	}
	c.exp.sweep()
	if n, q := c.recent.len(), c.recent.queued(); n != 2 || q != 2 {
		t.Fatalf("after the sweep at +1m: %d rooms, %d deadlines; want 2, 2", n, q)
	}
	at(90 * time.Second)
	if a2, _ := read(2); len(a2) != 0 {
		t.Fatalf("room 2 at ttl after its last add: %v", a2)
	}
	c.exp.sweep()
	if n, q := c.recent.len(), c.recent.queued(); n != 1 || q != 1 {
		t.Fatalf("after the sweep at +90s: %d rooms, %d deadlines; want 1, 1", n, q)
	}
	at(2 * time.Minute)
	c.exp.sweep()
	if n, q := c.recent.len(), c.recent.queued(); n != 0 || q != 0 {
		t.Fatalf("after the sweep at +2m: %d rooms, %d deadlines; want 0, 0", n, q)
	}
}

// Adds in any order read back in ID order, the newest RecentPerRoom (5).
func TestRecentWindowOutOfOrder(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := rand.New(rand.NewPCG(1, 2))
			perm := r.Perm(20)
			for i := 0; i < len(perm); {
				k := min(1+r.IntN(4), len(perm)-i)
				var batch []chat.Message
				for _, p := range perm[i : i+k] {
					batch = append(batch, msg(int64(p+1), 3, 1, "", "m"))
				}
				if err := c.AddRecent(ctx, batch); err != nil {
					t.Fatal(err)
				}
				i += k
			}
			got, err := c.RecentAfter(ctx, 3, 0)
			if err != nil || fmt.Sprint(ids(got)) != "[16 17 18 19 20]" {
				t.Fatalf("window %v, %v; want [16 17 18 19 20]", ids(got), err)
			}
			// An add older than the whole window changes nothing.
			if err := c.AddRecent(ctx, []chat.Message{msg(2, 3, 1, "", "late")}); err != nil {
				t.Fatal(err)
			}
			if got, _ := c.RecentAfter(ctx, 3, 0); fmt.Sprint(ids(got)) != "[16 17 18 19 20]" {
				t.Fatalf("after a late add: %v", ids(got))
			}
			if got, err := c.RecentAfter(ctx, 99, 0); err != nil || got == nil || len(got) != 0 {
				t.Fatalf("unknown room: %v (nil %v), %v; want empty", got, got == nil, err)
			}
			if got, err := c.RecentBefore(ctx, 99, 0, 5); err != nil || got == nil || len(got) != 0 {
				t.Fatalf("unknown room before: %v, %v; want empty", got, err)
			}
		})
	}
}

// The same message added twice is one entry, as one sorted-set member; the
// same ID with a different JSON is a second one, ordered by its JSON.
func TestRecentWindowSameMessage(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			m := msg(7, 4, 1, "n", "hello")
			for _, batch := range [][]chat.Message{{m}, {m, m}, {msg(6, 4, 1, "", "x"), m}} {
				if err := c.AddRecent(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
			// The same message read back from a nonce claim: same JSON.
			back, ok := canonicalMessage(m)
			if !ok {
				t.Fatal("not canonical")
			}
			if err := c.AddRecent(ctx, []chat.Message{back}); err != nil {
				t.Fatal(err)
			}
			got, err := c.RecentAfter(ctx, 4, 0)
			if err != nil || fmt.Sprint(ids(got)) != "[6 7]" {
				t.Fatalf("window %v, %v; want [6 7]", ids(got), err)
			}
			other := msg(7, 4, 1, "n", "a different body")
			if err := c.AddRecent(ctx, []chat.Message{other, msg(8, 4, 1, "", "y")}); err != nil {
				t.Fatal(err)
			}
			got, _ = c.RecentAfter(ctx, 4, 0)
			var bodies []string
			for _, g := range got {
				bodies = append(bodies, g.Body)
			}
			if fmt.Sprint(ids(got)) != "[6 7 7 8]" || fmt.Sprint(bodies) != "[x a different body hello y]" {
				t.Fatalf("window %v %q; want [6 7 7 8] in JSON order", ids(got), bodies)
			}
			if got, _ := c.RecentBefore(ctx, 4, 8, 1); len(got) != 1 || got[0].Body != "hello" {
				t.Fatalf("RecentBefore(8, 1) = %v", got)
			}
		})
	}
}

// A message whose JSON does not read back holds its place in the window but
// is never returned, as a member that does not decode; times come back in
// UTC and invalid UTF-8 as U+FFFD, as from Redis.
func TestRecentWindowRoundTrip(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var batch []chat.Message
			for i := int64(1); i <= 5; i++ {
				batch = append(batch, msg(i, 5, 1, "", "m"))
			}
			batch[2].CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // does not parse back
			batch[3].CreatedAt = time.Unix(4, 5).In(time.FixedZone("x", 3600))
			edited := time.Unix(9, 9)
			batch[3].EditedAt = &edited
			batch[4].Body = "bad \xff utf-8"
			if err := c.AddRecent(ctx, batch); err != nil {
				t.Fatal(err)
			}
			got, err := c.RecentAfter(ctx, 5, 0)
			if err != nil || fmt.Sprint(ids(got)) != "[1 2 4 5]" {
				t.Fatalf("window %v, %v; want [1 2 4 5]", ids(got), err)
			}
			if m := got[2]; m.CreatedAt.Location() != time.UTC || !m.CreatedAt.Equal(batch[3].CreatedAt) ||
				m.EditedAt == nil || m.EditedAt.Location() != time.UTC || !m.EditedAt.Equal(edited) {
				t.Fatalf("times read back as %v, %v", m.CreatedAt, m.EditedAt)
			}
			if got[3].Body != "bad \uFFFD utf-8" {
				t.Fatalf("body read back as %q", got[3].Body)
			}
			// The newest 2 below 5 are 4 and the unreadable 3.
			if before, _ := c.RecentBefore(ctx, 5, 5, 2); fmt.Sprint(ids(before)) != "[4]" {
				t.Fatalf("RecentBefore(5, 2) = %v, want [4]", ids(before))
			}
			if before, _ := c.RecentBefore(ctx, 5, 0, 0); fmt.Sprint(ids(before)) != "[1 2 4 5]" {
				t.Fatalf("RecentBefore(0, 0) = %v, want [1 2 4 5]", ids(before))
			}
		})
	}
}

// A read returns copies: changing them changes nothing stored.
func TestRecentWindowReadsCopies(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			m := msg(1, 6, 1, "", "original")
			edited := time.Unix(50, 0).UTC()
			m.EditedAt = &edited
			if err := c.AddRecent(ctx, []chat.Message{m}); err != nil {
				t.Fatal(err)
			}
			edited = edited.Add(time.Hour) // the caller's own copy, after the add
			for _, read := range []func() ([]chat.Message, error){
				func() ([]chat.Message, error) { return c.RecentAfter(ctx, 6, 0) },
				func() ([]chat.Message, error) { return c.RecentBefore(ctx, 6, 0, 1) },
			} {
				got, err := read()
				if err != nil || len(got) != 1 {
					t.Fatal(got, err)
				}
				*got[0].EditedAt = time.Unix(99, 0)
				got[0].Body, got[0].ID = "changed", 2
				got, _ = read()
				if len(got) != 1 || got[0].Body != "original" || got[0].ID != 1 || !got[0].EditedAt.Equal(time.Unix(50, 0)) {
					t.Fatalf("read after changing a copy: %+v", got)
				}
			}
		})
	}
}

// Many goroutines add and read at once (run with -race), with sweeps in
// between; every window ends as its newest RecentPerRoom messages.
func TestRecentWindowConcurrent(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const goroutines, rooms, per = 8, 4, 200
			var wg sync.WaitGroup
			stop := make(chan struct{})
			if c.recent != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
							c.exp.sweep()
							runtime.Gosched()
						}
					}
				}()
			}
			var adders sync.WaitGroup
			for g := range goroutines {
				adders.Add(1)
				go func() {
					defer adders.Done()
					for i := range per {
						id := int64(i*goroutines + g + 1)
						room := 100 + id%rooms
						if err := c.AddRecent(ctx, []chat.Message{msg(id, room, 1, "", "m"), msg(id, room, 1, "", "m")}); err != nil {
							t.Error(err)
							return
						}
						got, err := c.RecentAfter(ctx, chat.ID(room), chat.ID(id-40))
						if err != nil {
							t.Error(err)
							return
						}
						if !slices.IsSortedFunc(got, func(a, b chat.Message) int { return cmp.Compare(a.ID, b.ID) }) {
							t.Errorf("unsorted read %v", ids(got))
							return
						}
						if _, err := c.RecentBefore(ctx, chat.ID(room), chat.ID(id), 3); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			adders.Wait()
			close(stop)
			wg.Wait()
			const last = goroutines * per
			for r := int64(0); r < rooms; r++ {
				room := chat.ID(100 + r)
				got, err := c.RecentAfter(ctx, room, 0)
				if err != nil || len(got) < 5 {
					t.Fatalf("room %d: %v, %v", room, ids(got), err)
				}
				got = got[len(got)-5:]
				for i, m := range got {
					// The room's IDs are r mod rooms; the newest five.
					want := chat.ID(last - (last-r)%rooms - int64(4-i)*rooms)
					if r == 0 {
						want = chat.ID(last - int64(4-i)*rooms)
					}
					if m.ID != want {
						t.Fatalf("room %d: window %v", room, ids(got))
					}
				}
			}
		})
	}
}

// The window against a plain model: random IDs (repeats included) in
// random batches, small and large, for several window sizes; and a full
// window's buffer stays within about twice its size.
func TestRecentTableModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 7, 64} {
		tab := newRecentTable(time.Now, n, time.Hour)
		var want []chat.ID // the newest n IDs added
		next := int64(0)
		for step := 0; step < 3000; step++ {
			var batch []chat.Message
			for k := 1 + r.IntN(20); k > 0; k-- {
				var id int64
				if r.IntN(4) == 0 {
					id = 1 + r.Int64N(next+1) // old, maybe seen
				} else {
					next++
					id = next
				}
				batch = append(batch, msg(id, 1, 1, "", "m"))
			}
			tab.add(batch)
			for _, m := range batch {
				want = append(want, m.ID)
			}
			slices.Sort(want)
			want = slices.Compact(want)
			want = want[max(0, len(want)-n):]
			if got := ids(tab.after(1, 0)); !slices.Equal(got, want) {
				t.Fatalf("n=%d step %d: window %v, want %v", n, step, got, want)
			}
			limit := r.IntN(n + 2)
			before := chat.ID(r.Int64N(next + 2))
			var wantB []chat.ID
			for _, id := range want {
				if before <= 0 || id < before {
					wantB = append(wantB, id)
				}
			}
			if limit > 0 && len(wantB) > limit {
				wantB = wantB[len(wantB)-limit:]
			}
			if got := ids(tab.before(1, before, limit)); !slices.Equal(got, wantB) {
				t.Fatalf("n=%d step %d: before(%d, %d) = %v, want %v", n, step, before, limit, got, wantB)
			}
			after := chat.ID(r.Int64N(next + 2))
			wantA := want[:0:0]
			for _, id := range want {
				if id > after {
					wantA = append(wantA, id)
				}
			}
			if got := ids(tab.after(1, after)); !slices.Equal(got, wantA) {
				t.Fatalf("n=%d step %d: after(%d) = %v, want %v", n, step, after, got, wantA)
			}
		}
		w := tab.rooms[1]
		if c := cap(w.buf); c > 2*(n+20) && c > recentMinCap {
			t.Fatalf("n=%d: buffer capacity %d for a window of %d", n, c, n)
		}
		for i := range w.buf[:w.head] {
			if w.buf[i] != (recentEntry{}) {
				t.Fatalf("n=%d: trimmed entry %d not cleared", n, i)
			}
		}
	}
}
