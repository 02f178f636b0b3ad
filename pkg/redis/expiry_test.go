package redis

import (
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

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

// useFakeClock makes c's expiry tracker read a clock the test moves. The
// background sweeper keeps running: whatever it sweeps, the test's own sweep
// at the same clock leaves the same keys.
func useFakeClock(c *Cache) *fakeClock {
	f := &fakeClock{t: time.Now()}
	c.exp.mu.Lock()
	c.exp.now = f.now
	c.exp.mu.Unlock()
	return f
}

// In embedded mode the keys written with a TTL are deleted once it has run
// out, each at its own latest deadline; nonce claims and room windows, kept
// in their native tables and never in miniredis, likewise.
func TestEmbeddedExpiry(t *testing.T) {
	ctx := context.Background()
	c := openEmbedded(t, Config{Prefix: "exp:", RecentPerRoom: 5, RecentTTL: time.Hour})
	clk := useFakeClock(c)
	t0 := clk.now()
	at := func(d time.Duration) { clk.set(t0.Add(d)); c.exp.sweep() }
	exists := func(k string) bool { return c.mini.Exists(k) }
	claimed := func(m chat.Message) bool { return c.nonces.live(m, clk.now()) }
	window := func() int {
		got, err := c.RecentAfter(ctx, 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}

	// t0: two nonce claims (10m), two sessions (1m), a room window (1h),
	// a rate bucket emptied (3 per minute: its key lives at most 1m).
	const nonceTTL = 10 * time.Minute
	n1, n2 := msg(1, 1, 1, "n1", "first"), msg(2, 1, 1, "n2", "b")
	if res, err := c.ClaimNonces(ctx, []chat.Message{n1, n2}, nonceTTL); err != nil || res[0] != nil || res[1] != nil {
		t.Fatalf("claims: %v %v", res, err)
	}
	caller := func(h string) chat.Caller {
		return chat.Caller{User: chat.User{ID: 7, Username: "ann"}, TokenHash: h, ExpiresAt: time.Now().Add(time.Hour)}
	}
	for _, h := range []string{"h1", "h2"} {
		if err := c.PutSession(ctx, caller(h), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddRecent(ctx, []chat.Message{msg(3, 9, 1, "", "m")}); err != nil {
		t.Fatal(err)
	}
	l := Limit{Rate: 3, Burst: 3, Period: time.Minute}
	for i := 0; i < 4; i++ {
		wait, err := c.Allow(ctx, "send:1", l)
		if err != nil || (i < 3) != (wait == 0) {
			t.Fatalf("event %d: wait=%v err=%v", i, wait, err)
		}
	}
	nonce1, nonce2 := c.nonceKey(n1), c.nonceKey(n2)
	sess1, sess2 := c.key("sess", "h1"), c.key("sess", "h2")
	recent := c.recentKey(9)
	rate := rateKeyPrefix + c.key("send:1")
	all := []string{sess1, sess2, rate}
	if got := c.mini.Keys(); !slices.Equal(got, slices.Sorted(slices.Values(all))) {
		t.Fatalf("keys = %q, want %q (no nonce key %q, %q, no window %q)", got, all, nonce1, nonce2, recent)
	}
	if window() != 1 || c.recent.len() != 1 {
		t.Fatalf("window holds %d, table %d rooms; want 1, 1", window(), c.recent.len())
	}
	if n := c.exp.len(); n != len(all) {
		t.Fatalf("tracking %d keys, want %d", n, len(all))
	}
	if n := c.nonces.len(); n != 2 || !claimed(n1) || !claimed(n2) {
		t.Fatalf("nonce table holds %d, n1 %v, n2 %v; want both", n, claimed(n1), claimed(n2))
	}

	// t0+30s: h1 is cached again (deadline t0+90s); n1 is retried, which
	// is refused and must not move its deadline.
	at(30 * time.Second)
	if err := c.PutSession(ctx, caller("h1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if res, _ := c.ClaimNonces(ctx, []chat.Message{msg(4, 1, 1, "n1", "retry")}, nonceTTL); res[0] == nil || res[0].Body != "first" {
		t.Fatalf("retry within ttl: %+v", res[0])
	}

	// t0+70s: h2 and the rate bucket are gone; the re-set h1 and the
	// not yet due keys stay.
	at(70 * time.Second)
	for k, want := range map[string]bool{sess1: true, sess2: false, rate: false} {
		if exists(k) != want {
			t.Errorf("at +70s: %s exists=%v, want %v", k, !want, want)
		}
	}
	if !claimed(n1) || !claimed(n2) || c.nonces.len() != 2 {
		t.Errorf("at +70s: n1 %v, n2 %v, table %d; want both", claimed(n1), claimed(n2), c.nonces.len())
	}
	if _, ok, _ := c.GetSession(ctx, "h2"); ok {
		t.Error("h2 still cached after its ttl")
	}
	// The bucket was deleted, not just forgotten: it starts full again.
	for i := 0; i < 3; i++ {
		if wait, err := c.Allow(ctx, "send:1", l); err != nil || wait != 0 {
			t.Fatalf("event %d after the bucket expired: wait=%v err=%v", i, wait, err)
		}
	}

	// t0+10m+1s: the claims (retried or not) and h1 are gone; the window
	// (and the bucket, re-created at +70s) stay.
	at(nonceTTL + time.Second)
	for k, want := range map[string]bool{sess1: false, rate: false} {
		if exists(k) != want {
			t.Errorf("at +10m1s: %s exists=%v, want %v", k, !want, want)
		}
	}
	if window() != 1 {
		t.Errorf("at +10m1s: the window holds %d, want 1", window())
	}
	if n := c.nonces.len(); n != 0 {
		t.Errorf("at +10m1s: the nonce table holds %d after the sweep, want 0", n)
	}
	// Dedupe lasts ttl, not forever: n1 now claims as new, and then
	// dedupes to the new message.
	if res, err := c.ClaimNonces(ctx, []chat.Message{msg(5, 1, 1, "n1", "second")}, nonceTTL); err != nil || res[0] != nil {
		t.Fatalf("claim after expiry: %+v %v", res[0], err)
	}
	if res, _ := c.ClaimNonces(ctx, []chat.Message{msg(6, 1, 1, "n1", "retry")}, nonceTTL); res[0] == nil || res[0].Body != "second" {
		t.Fatalf("retry of the new claim: %+v", res[0])
	}

	if exists(nonce1) {
		t.Error("a nonce claim reached miniredis")
	}

	// Past every TTL nothing is left, in miniredis, the tracker or the
	// nonce table.
	at(2 * time.Hour)
	if n, err := c.rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE = %d (%v), keys %q, want 0", n, err, c.mini.Keys())
	}
	if n := c.exp.len(); n != 0 {
		t.Fatalf("tracker holds %d keys after all expired", n)
	}
	if n, q := c.nonces.len(), c.nonces.queued(); n != 0 || q != 0 {
		t.Fatalf("nonce table holds %d entries, %d deadlines after all expired", n, q)
	}
	if n, q := c.recent.len(), c.recent.queued(); n != 0 || q != 0 || window() != 0 {
		t.Fatalf("recent table holds %d rooms, %d deadlines after all expired", n, q)
	}
	if exists(recent) {
		t.Error("a room window reached miniredis")
	}
}

// A real Redis expires keys itself: no tracker, no sweeper.
func TestNoExpiryWithRealRedis(t *testing.T) {
	for name, c := range openCaches(t) {
		if (c.mini == nil) != (c.exp == nil) {
			t.Errorf("%s: mini=%v exp=%v", name, c.mini != nil, c.exp != nil)
		}
	}
}

// The tracker deletes exactly the keys whose latest deadline has passed,
// across sweeps larger than one batch.
func TestExpiryTracker(t *testing.T) {
	var deleted []string
	x := newExpiry(func(k string) { deleted = append(deleted, k) })
	clk := &fakeClock{t: time.Unix(1000, 0)}
	x.now = clk.now
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]time.Time{} // key -> latest deadline
	for step := 0; step < 20; step++ {
		for i := 0; i < 500; i++ {
			k := fmt.Sprint("k", rng.IntN(3000))
			ttl := time.Duration(rng.IntN(100)) * time.Second
			x.track(k, ttl)
			want[k] = clk.now().Add(ttl)
		}
		clk.set(clk.now().Add(time.Duration(rng.IntN(40)) * time.Second))
		deleted = deleted[:0]
		n := x.sweep()
		var due []string
		for k, at := range want {
			if !at.After(clk.now()) {
				due = append(due, k)
				delete(want, k)
			}
		}
		slices.Sort(due)
		got := slices.Sorted(slices.Values(deleted))
		if n != len(got) || !slices.Equal(got, due) {
			t.Fatalf("step %d: swept %d %v, want %v", step, n, got, due)
		}
		if x.len() != len(want) || len(x.h) != len(want) {
			t.Fatalf("step %d: tracker holds %d (heap %d), want %d", step, x.len(), len(x.h), len(want))
		}
	}
}

// Close stops the sweeper goroutine and waits for it.
func TestCloseStopsSweeper(t *testing.T) {
	c, err := Open(context.Background(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := c.exp.done
	select {
	case <-done:
		t.Fatal("sweeper stopped before Close")
	default:
	}
	c.Close()
	select {
	case <-done:
	default:
		t.Fatal("Close returned with the sweeper still running")
	}
}

// The cost track adds to a write, with 1 M keys tracked.
func BenchmarkTrack(b *testing.B) {
	x := newExpiry(func(string) {})
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = fmt.Sprintf("chatd:nonce:%d:%d", i, i)
		x.track(keys[i], time.Duration(i)*time.Millisecond)
	}
	b.Run("new", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			x.track(fmt.Sprint("new:", i), 10*time.Minute)
		}
	})
	b.Run("reset", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			x.track(keys[i&(len(keys)-1)], 10*time.Minute)
		}
	})
}

// What an expired nonce claim still costs the embedded cache once swept.
// Claims once were miniredis keys, and miniredis keeps a WATCH version for
// every key ever written (RedisDB.keyVersion, never pruned, not even by DEL
// or FLUSHALL): 65.9 B per claim, for good. They are now kept in nonceTable,
// which keeps nothing of a swept claim: ~0 B. Claims are swept every 1000,
// so the live set (and the maps' peak size) stays small and retained-B/key
// is that residue. Run with -benchtime=100000x.
func BenchmarkExpiredNonceResidue(b *testing.B) {
	ctx := context.Background()
	c := openEmbedded(b, Config{Prefix: "chatd:"})
	clk := useFakeClock(c)
	batch := make([]chat.Message, 1)
	claim := func(i int) {
		batch[0] = msg(int64(i+1), 1, int64(i%1000), fmt.Sprint("nonce-", i), "hello world")
		if _, err := c.ClaimNonces(ctx, batch, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			clk.set(clk.now().Add(time.Hour))
			c.exp.sweep()
		}
	}
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	const warm = 2000
	for i := range warm {
		claim(i)
	}
	before := heap()
	n := 0
	for b.Loop() {
		claim(warm + n)
		n++
	}
	clk.set(clk.now().Add(time.Hour))
	c.exp.sweep()
	if left := len(c.mini.Keys()); left != 0 {
		b.Fatalf("%d keys left", left)
	}
	if left := c.nonces.len(); left != 0 {
		b.Fatalf("%d claims left", left)
	}
	b.ReportMetric(float64(heap()-before)/float64(n), "retained-B/key")
}
