package redis

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// openCaches returns the embedded cache and, when CHATD_TEST_REDIS_URL is
// set (the integration tier), one on that real Redis too, each with its own
// key prefix so runs do not see each other.
func openCaches(t *testing.T) map[string]*Cache {
	t.Helper()
	out := map[string]*Cache{}
	prefix := "test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":" + time.Now().Format("150405.000000000") + ":"
	c, err := Open(context.Background(), Config{Prefix: prefix, RecentPerRoom: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out["embedded"] = c
	if url := os.Getenv("CHATD_TEST_REDIS_URL"); url != "" {
		r, err := Open(context.Background(), Config{URL: url, Prefix: prefix, RecentPerRoom: 5}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out["redis"] = r
	}
	return out
}

// openEmbedded opens an embedded cache (miniredis and the native tables),
// closed when the test ends.
func openEmbedded(tb testing.TB, cfg Config) *Cache {
	tb.Helper()
	c, err := Open(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func msg(id, room, user int64, nonce, body string) chat.Message {
	return chat.Message{ID: chat.ID(id), RoomID: chat.ID(room), UserID: chat.ID(user), Username: "u", Body: body, Nonce: nonce, CreatedAt: time.Unix(0, id).UTC()}
}

func TestSessionCache(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, ok, err := c.GetSession(ctx, "h1"); ok || err != nil {
				t.Fatalf("empty cache: ok=%v err=%v", ok, err)
			}
			caller := chat.Caller{User: chat.User{ID: 7, Username: "ann", CreatedAt: time.Unix(5, 6).UTC()}, TokenHash: "h1", ExpiresAt: time.Now().Add(time.Hour).UTC()}
			if err := c.PutSession(ctx, caller, time.Minute); err != nil {
				t.Fatal(err)
			}
			got, ok, err := c.GetSession(ctx, "h1")
			if err != nil || !ok || got.User.ID != 7 || got.User.Username != "ann" || !got.ExpiresAt.Equal(caller.ExpiresAt) {
				t.Fatalf("got %+v ok=%v err=%v", got, ok, err)
			}
			if err := c.DeleteSession(ctx, "h1"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.GetSession(ctx, "h1"); ok {
				t.Fatal("session still cached after delete")
			}
			// An already expired session is never cached.
			caller.ExpiresAt = time.Now().Add(-time.Second)
			caller.TokenHash = "h2"
			if err := c.PutSession(ctx, caller, time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := c.GetSession(ctx, "h2"); ok {
				t.Fatal("expired session cached")
			}
		})
	}
}

func TestAllow(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := Limit{Rate: 3, Burst: 3, Period: time.Minute}
			for i := 0; i < 3; i++ {
				if wait, err := c.Allow(ctx, "send:1", l); err != nil || wait != 0 {
					t.Fatalf("event %d: wait=%v err=%v", i, wait, err)
				}
			}
			wait, err := c.Allow(ctx, "send:1", l)
			if err != nil || wait <= 0 || wait > time.Minute {
				t.Fatalf("4th event: wait=%v err=%v, want a wait in (0, 1m]", wait, err)
			}
			// Buckets are per key.
			if wait, _ := c.Allow(ctx, "send:2", l); wait != 0 {
				t.Fatalf("other key limited: %v", wait)
			}
		})
	}
}

func TestClaimNonces(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			first := []chat.Message{msg(1, 1, 1, "n1", "a"), msg(2, 1, 1, "", "b"), msg(3, 1, 2, "n1", "c"), msg(4, 1, 1, "n1", "dup in batch")}
			res, err := c.ClaimNonces(ctx, first, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if res[0] != nil || res[1] != nil || res[2] != nil {
				t.Fatalf("fresh claims refused: %v", res)
			}
			if res[3] == nil || res[3].ID != 1 {
				t.Fatalf("in-batch duplicate not mapped to the first: %v", res[3])
			}
			again, err := c.ClaimNonces(ctx, []chat.Message{msg(9, 1, 1, "n1", "retry"), msg(10, 1, 2, "n2", "new")}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if again[0] == nil || again[0].ID != 1 || again[0].Body != "a" {
				t.Fatalf("retry not answered with first message: %+v", again[0])
			}
			if again[1] != nil {
				t.Fatal("new nonce refused")
			}
		})
	}
}

func TestRecentWindow(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var batch []chat.Message
			for i := int64(1); i <= 8; i++ {
				batch = append(batch, msg(i, 1, 1, "", "m"))
			}
			batch = append(batch, msg(100, 2, 1, "", "other room"))
			// Out of order across two pushes, as two ingest instances could.
			if err := c.AddRecent(ctx, batch[4:]); err != nil {
				t.Fatal(err)
			}
			if err := c.AddRecent(ctx, batch[:4]); err != nil {
				t.Fatal(err)
			}
			got, err := c.RecentAfter(ctx, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			var ids []chat.ID
			for _, m := range got {
				ids = append(ids, m.ID)
			}
			if fmt.Sprint(ids) != "[4 5 6 7 8]" {
				t.Fatalf("window = %v, want the newest five [4 5 6 7 8]", ids)
			}
			if after, _ := c.RecentAfter(ctx, 1, 6); len(after) != 2 || after[0].ID != 7 {
				t.Fatalf("after 6: %v", after)
			}
			if other, _ := c.RecentAfter(ctx, 2, 0); len(other) != 1 || other[0].Body != "other room" {
				t.Fatalf("room 2 window: %v", other)
			}
			before, err := c.RecentBefore(ctx, 1, 8, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(before) != 2 || before[0].ID != 6 || before[1].ID != 7 {
				t.Fatalf("RecentBefore(8, 2) = %v, want [6 7]", before)
			}
			if newest, _ := c.RecentBefore(ctx, 1, 0, 3); len(newest) != 3 || newest[2].ID != 8 {
				t.Fatalf("RecentBefore(0, 3) = %v, want [6 7 8]", newest)
			}
		})
	}
}

// Trimming is amortized: the window never holds fewer than the newest
// RecentPerRoom, nor more than RecentPerRoom/8 beyond them.
func TestRecentWindowTrimAmortized(t *testing.T) {
	const n = 64
	c := openEmbedded(t, Config{Prefix: "trim:", RecentPerRoom: n})
	ctx := context.Background()
	for i := int64(1); i <= 500; i++ {
		batch := []chat.Message{msg(i, 1, 1, "", "m")}
		if i%7 == 0 {
			batch = append(batch, msg(10000+i, 2, 1, "", "other"))
		}
		if err := c.AddRecent(ctx, batch); err != nil {
			t.Fatal(err)
		}
		got, err := c.RecentAfter(ctx, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := min(i, n)
		if int64(len(got)) < want || len(got) > n+n/8 {
			t.Fatalf("after %d adds the window holds %d, want %d to %d", i, len(got), want, n+n/8)
		}
		if got[len(got)-1].ID != chat.ID(i) || got[len(got)-int(want)].ID != chat.ID(i-want+1) {
			t.Fatalf("after %d adds the window is %v..%v", i, got[0].ID, got[len(got)-1].ID)
		}
	}
	// A process that restarts (no counts) trims at its first add.
	c.untrimmed = map[chat.ID]windowUpkeep{}
	if err := c.AddRecent(ctx, []chat.Message{msg(501, 1, 1, "", "m")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.RecentAfter(ctx, 1, 0); len(got) != n {
		t.Fatalf("first add after a restart left %d, want %d", len(got), n)
	}
}

// A window's TTL is set by its first add and renewed when it is trimmed or
// a quarter of the TTL has passed, not by every add. The embedded cache
// keeps a window until RecentTTL after its room's last add (see
// recentTable), checked on the tracker's clock.
func TestRecentWindowTTLRenewal(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c.recentN = 64 // trims every 8 adds, so adds 2 and 3 do not trim
			room := chat.ID(4242)
			add := func(id int64) {
				t.Helper()
				if err := c.AddRecent(ctx, []chat.Message{msg(id, int64(room), 1, "", "m")}); err != nil {
					t.Fatal(err)
				}
			}
			window := func() int {
				t.Helper()
				got, err := c.RecentAfter(ctx, room, 0)
				if err != nil {
					t.Fatal(err)
				}
				return len(got)
			}
			if c.recent != nil {
				clk := useFakeClock(c)
				t0 := clk.now()
				at := func(d time.Duration) { clk.set(t0.Add(d)) }
				add(1)
				at(c.recentT / 2)
				add(2)
				// Past the first add's TTL, the second add's keeps it.
				at(c.recentT + time.Second)
				if c.exp.sweep(); window() != 2 || c.recent.len() != 1 {
					t.Fatalf("at TTL+1s after the first add: window %d, %d rooms; want 2, 1", window(), c.recent.len())
				}
				add(3)
				at(c.recentT + time.Second + c.recentT - time.Second)
				if c.exp.sweep(); window() != 3 {
					t.Fatalf("a second before TTL after the last add: window %d, want 3", window())
				}
				// TTL after the last add it is gone: at once for reads,
				// from the table at the next sweep.
				at(2*c.recentT + time.Second)
				if window() != 0 || c.recent.len() != 1 {
					t.Fatalf("TTL after the last add, before a sweep: window %d, %d rooms; want 0, 1", window(), c.recent.len())
				}
				if c.exp.sweep(); c.recent.len() != 0 {
					t.Fatalf("TTL after the last add, after a sweep: %d rooms, want 0", c.recent.len())
				}
				return
			}
			k := c.recentKey(room)
			ttl := func() time.Duration {
				t.Helper()
				d, err := c.rdb.TTL(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			add(1)
			if d := ttl(); d <= c.recentT-time.Minute || d > c.recentT {
				t.Fatalf("after the first add the TTL is %v, want about %v", d, c.recentT)
			}
			// Shorten it by hand: an add that neither trims nor finds the
			// renewal due leaves it alone.
			if err := c.rdb.Expire(ctx, k, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			add(2)
			if d := ttl(); d > time.Minute {
				t.Fatalf("an add renewed the TTL to %v before it was due", d)
			}
			// A quarter of the TTL later, the next add renews it.
			c.trimMu.Lock()
			u := c.untrimmed[room]
			u.renewed = u.renewed.Add(-c.recentT / 4)
			c.untrimmed[room] = u
			c.trimMu.Unlock()
			add(3)
			if d := ttl(); d <= c.recentT-time.Minute {
				t.Fatalf("a due renewal left the TTL at %v", d)
			}
			if n := window(); n != 3 {
				t.Fatalf("window holds %d; want 3 messages", n)
			}
		})
	}
}

// A claim refused because the nonce is taken reads the first message back;
// one whose stored value is unreadable lets the message be stored.
func TestClaimNoncesUnreadableClaim(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			m := msg(1, 1, 77, "junk-nonce", "a")
			if err := c.rdb.Set(ctx, c.nonceKey(m), "not json", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			res, err := c.ClaimNonces(ctx, []chat.Message{m, msg(2, 1, 77, "fresh", "b")}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if res[0] != nil || res[1] != nil {
				t.Fatalf("got %v, want both storable", res)
			}
		})
	}
}
