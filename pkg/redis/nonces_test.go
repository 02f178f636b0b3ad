package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/chatd/chatd/pkg/chat"
)

// The cost of ClaimNonces in embedded mode per message, batches of 16 as a
// busy ingest flushes them. fresh: every nonce is new (the send path);
// retry: every nonce is already claimed (a client resending a batch).
// Claims are expired every 1024 batches so the live set stays small.
func BenchmarkClaimNonces(b *testing.B) {
	const batchLen = 16
	ctx := context.Background()
	c := openEmbedded(b, Config{Prefix: "chatd:"})
	clk := useFakeClock(c)
	batch := make([]chat.Message, batchLen)
	fill := func(i int) {
		for j := range batch {
			n := i*batchLen + j
			batch[j] = msg(int64(n+1), 1, int64(n%1000), fmt.Sprint("nonce-", n), "hello world")
		}
	}
	perMsg := func(b *testing.B, n int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*batchLen), "ns/msg")
	}
	b.Run("fresh", func(b *testing.B) {
		n := 0
		for b.Loop() {
			fill(n)
			if _, err := c.ClaimNonces(ctx, batch, 10*time.Minute); err != nil {
				b.Fatal(err)
			}
			n++
			if n%1024 == 0 {
				clk.set(clk.now().Add(time.Hour))
				c.exp.sweep()
			}
		}
		perMsg(b, n)
	})
	b.Run("retry", func(b *testing.B) {
		fill(1 << 30 / batchLen)
		if _, err := c.ClaimNonces(ctx, batch, time.Hour); err != nil {
			b.Fatal(err)
		}
		n := 0
		for b.Loop() {
			res, err := c.ClaimNonces(ctx, batch, time.Hour)
			if err != nil || res[batchLen-1] == nil {
				b.Fatal("not refused", err)
			}
			n++
		}
		perMsg(b, n)
	})
}

// live reports whether the table holds a claim of m's (user, nonce) that
// has not expired at now.
func (t *nonceTable) live(m chat.Message, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[nonceID{m.UserID, m.Nonce}]
	return ok && e.at > t.since(now)
}

// A claim is free again once its ttl has run out, before any sweep, and a
// refused claim does not move its deadline.
func TestNonceClaimExpires(t *testing.T) {
	ctx := context.Background()
	c := openEmbedded(t, Config{Prefix: "nx:"})
	clk := useFakeClock(c)
	t0 := clk.now()
	claim := func(m chat.Message) *chat.Message {
		t.Helper()
		res, err := c.ClaimNonces(ctx, []chat.Message{m}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	if got := claim(msg(1, 1, 1, "n", "first")); got != nil {
		t.Fatalf("fresh claim refused: %+v", got)
	}
	clk.set(t0.Add(time.Minute - time.Nanosecond))
	if got := claim(msg(2, 1, 1, "n", "retry")); got == nil || got.ID != 1 {
		t.Fatalf("retry just inside the ttl: %+v", got)
	}
	// The deadline is t0+1m exactly: the claim at 1m-1ns refused moved
	// nothing, and no sweep is needed.
	clk.set(t0.Add(time.Minute))
	if got := claim(msg(3, 1, 1, "n", "again")); got != nil {
		t.Fatalf("claim at the deadline refused: %+v", got)
	}
	if got := claim(msg(4, 1, 1, "n", "retry")); got == nil || got.ID != 3 {
		t.Fatalf("retry of the new claim: %+v", got)
	}
	if n, q := c.nonces.len(), c.nonces.queued(); n != 1 || q != 2 {
		t.Fatalf("table %d entries, %d deadlines; want 1, 2", n, q)
	}
	// The sweep at t0+1m drops the first deadline but not the new entry
	// of the same key.
	if c.exp.sweep(); c.nonces.len() != 1 || c.nonces.queued() != 1 {
		t.Fatalf("after the first deadline: table %d, deadlines %d; want 1, 1", c.nonces.len(), c.nonces.queued())
	}
	clk.set(t0.Add(2 * time.Minute))
	if c.exp.sweep(); c.nonces.len() != 0 || c.nonces.queued() != 0 || len(c.nonces.queues) != 0 {
		t.Fatalf("after every deadline: table %d, deadlines %d", c.nonces.len(), c.nonces.queued())
	}
	if keys := c.mini.Keys(); len(keys) != 0 {
		t.Fatalf("miniredis keys %q, want none", keys)
	}
}

// Out mirrors the Redis path exactly: no nonce or a new claim is nil, an
// in-call repeat is a copy of the first message in the call (even when that
// one was refused), a refused claim a copy of the stored message as its
// JSON reads back.
func TestNonceClaimResults(t *testing.T) {
	ctx := context.Background()
	c := openEmbedded(t, Config{})
	edited := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	stored := msg(1, 1, 1, "a", "first")
	stored.EditedAt = &edited
	stored.CreatedAt = time.Now() // local, with a monotonic reading
	if res, _ := c.ClaimNonces(ctx, []chat.Message{stored}, time.Minute); res[0] != nil {
		t.Fatal("refused")
	}
	batch := []chat.Message{msg(2, 1, 1, "", "no nonce"), msg(3, 1, 1, "a", "retry"), msg(4, 1, 1, "b", "new"), msg(5, 1, 1, "a", "retry again"), msg(6, 1, 1, "b", "dup of new")}
	res, err := c.ClaimNonces(ctx, batch, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var want chat.Message
	if err := json.Unmarshal(stored.JSON(), &want); err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || res[2] != nil {
		t.Fatalf("storable ones refused: %v", res)
	}
	if res[1] == nil || !reflect.DeepEqual(*res[1], want) {
		t.Fatalf("refused claim = %+v, want %+v", res[1], want)
	}
	if res[3] == nil || !reflect.DeepEqual(*res[3], batch[1]) || res[3] == &batch[1] {
		t.Fatalf("repeat of a refused claim = %+v, want a copy of %+v", res[3], batch[1])
	}
	if res[4] == nil || !reflect.DeepEqual(*res[4], batch[2]) || res[4] == &batch[2] {
		t.Fatalf("repeat of a new claim = %+v, want a copy of %+v", res[4], batch[2])
	}
	// Each answer is the caller's own: changing it changes no later one.
	res[1].Body = "changed"
	*res[1].EditedAt = time.Time{}
	again, _ := c.ClaimNonces(ctx, []chat.Message{msg(7, 1, 1, "a", "")}, time.Minute)
	if again[0] == nil || !reflect.DeepEqual(*again[0], want) {
		t.Fatalf("after the caller changed its copy: %+v", again[0])
	}
	// A canceled context fails as go-redis would, unless nothing is claimed.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.ClaimNonces(cctx, []chat.Message{msg(8, 1, 1, "c", "")}, time.Minute); err == nil {
		t.Error("claim with a canceled context succeeded")
	}
	if res, err := c.ClaimNonces(cctx, []chat.Message{msg(8, 1, 1, "", "")}, time.Minute); err != nil || res[0] != nil {
		t.Errorf("no claim with a canceled context: %v %v", res, err)
	}
}

// A table entry stays small enough for the map to store it inline.
func TestNonceEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(nonceEntry{}); n > 128 {
		t.Fatalf("nonceEntry is %d bytes, want at most 128", n)
	}
}

// canonicalMessage is the JSON round trip a message stored in Redis makes.
func TestCanonicalMessage(t *testing.T) {
	edited := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", -7200))
	far := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []chat.Message{
		msg(1, 2, 3, "n", "plain"),
		{ID: 1, UserID: 2, Nonce: "n", Username: "<&>\u2028\x01\"", Body: "é\t\n", CreatedAt: time.Now(), EditedAt: &edited},
		{ID: 1, UserID: 2, Nonce: "n\xff", Username: "a\xffb", Body: "\xc3"},
		{ID: 1, Nonce: "n"},
		{ID: 1, Nonce: "n", CreatedAt: far},
		{ID: 1, Nonce: "n", CreatedAt: time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, m := range cases {
		var want chat.Message
		wantOK := json.Unmarshal(m.JSON(), &want) == nil
		got, ok := canonicalMessage(m)
		if ok != wantOK || (ok && !reflect.DeepEqual(got, want)) {
			t.Errorf("case %d: got %+v %v, want %+v %v", i, got, ok, want, wantOK)
		}
	}
	// One that does not read back is refused as with Redis: the retry
	// may be stored.
	c := openEmbedded(t, Config{})
	bad := chat.Message{ID: 1, UserID: 5, Nonce: "far", CreatedAt: far}
	for i := 0; i < 2; i++ {
		if res, err := c.ClaimNonces(context.Background(), []chat.Message{bad}, time.Minute); err != nil || res[0] != nil {
			t.Fatalf("claim %d of an unreadable message: %v %v", i, res, err)
		}
	}
}

// Concurrent claims of one nonce: exactly one wins, and every other gets
// the winner's message. Run with -race.
func TestNonceClaimConcurrent(t *testing.T) {
	for name, c := range openCaches(t) {
		t.Run(name, func(t *testing.T) {
			const goroutines, rounds = 16, 50
			ctx := context.Background()
			for r := 0; r < rounds; r++ {
				nonce := fmt.Sprint("race-", r)
				var wg sync.WaitGroup
				res := make([]*chat.Message, goroutines)
				errs := make([]error, goroutines)
				for g := range goroutines {
					wg.Go(func() {
						// Each call also claims a nonce of its own.
						out, err := c.ClaimNonces(ctx, []chat.Message{msg(int64(g+1), 1, 42, fmt.Sprint("own-", r, "-", g), "own"), msg(int64(g+100), 1, 42, nonce, fmt.Sprint("from ", g))}, time.Minute)
						errs[g] = err
						if err == nil {
							if out[0] != nil {
								errs[g] = fmt.Errorf("own nonce refused: %+v", out[0])
							}
							res[g] = out[1]
						}
					})
				}
				wg.Wait()
				winner := -1
				for g, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
					if res[g] == nil {
						if winner >= 0 {
							t.Fatalf("round %d: %d and %d both won", r, winner, g)
						}
						winner = g
					}
				}
				if winner < 0 {
					t.Fatalf("round %d: nobody won", r)
				}
				for g, m := range res {
					if g != winner && (m.ID != chat.ID(winner+100) || m.Body != fmt.Sprint("from ", winner)) {
						t.Fatalf("round %d: %d got %+v, want the message of %d", r, g, m, winner)
					}
				}
			}
		})
	}
}

// The table's memory follows its live entries: the deadlines' ring shrinks
// and the map is rebuilt once a burst has expired, and claims with several
// ttls each expire on time.
func TestNonceTableShrinks(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tb := newNonceTable(clk.now)
	const burst = 3 * nonceShrinkMin
	batch := make([]chat.Message, 64)
	for i := 0; i < burst; i += len(batch) {
		for j := range batch {
			batch[j] = msg(int64(i+j), 1, 1, fmt.Sprint(i+j), "")
		}
		ttl := time.Minute
		if i%128 == 0 {
			ttl = 2 * time.Minute
		}
		tb.claim(batch, ttl)
	}
	if tb.len() != burst || tb.peak != burst || len(tb.queues) != 2 {
		t.Fatalf("table %d, peak %d, queues %d", tb.len(), tb.peak, len(tb.queues))
	}
	clk.set(clk.now().Add(time.Minute))
	if n := tb.sweep(); n != burst/2 || tb.len() != burst/2 || tb.peak != burst {
		t.Fatalf("at +1m swept %d, left %d (peak %d), want %d each", n, tb.len(), tb.peak, burst/2)
	}
	// One claim at +1m with a 2m ttl: its deadline, +3m, is after the burst's.
	tb.claim([]chat.Message{msg(1, 1, 2, "late", "")}, 2*time.Minute)
	clk.set(clk.now().Add(time.Minute))
	if n := tb.sweep(); n != burst/2 || tb.len() != 1 || tb.peak != 1 {
		t.Fatalf("at +2m swept %d, left %d (peak %d), want %d, 1, 1 (map rebuilt)", n, tb.len(), tb.peak, burst/2)
	}
	q := tb.queues[2*time.Minute]
	if len(tb.queues) != 1 || q == nil || q.n != 1 || len(q.buf) != nonceFIFOMin {
		t.Fatalf("queues %v, want the 2m one holding 1 in %d slots", tb.queues, nonceFIFOMin)
	}
}
