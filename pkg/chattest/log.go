package chattest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// Log runs the conformance suite of chat.Log. open must return a new, empty
// log for each call (a fresh stream or topic); it registers its own cleanup.
func Log(t *testing.T, open func(t *testing.T) chat.Log) {
	t.Run("EveryMessageInRoomOrder", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 300, 5)
		for i := 0; i < len(msgs); i += 100 {
			appendAll(t, l, msgs[i:i+100])
		}
		c := newCollector(nil)
		runConsumer(t, l, "g1", c.handle)
		c.waitCount(t, len(msgs))
		c.checkExact(t, msgs)
	})

	t.Run("GroupsAreIndependent", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 200, 3)
		appendAll(t, l, msgs)
		a := newCollector(nil)
		runConsumer(t, l, "a", a.handle)
		a.waitCount(t, len(msgs))
		waitLag(t, l, "a", 0)
		// b has not consumed anything: a's progress must not be b's.
		waitLag(t, l, "b", int64(len(msgs)))
		b := newCollector(nil)
		runConsumer(t, l, "b", b.handle)
		b.waitCount(t, len(msgs))
		a.checkExact(t, msgs)
		b.checkExact(t, msgs)
	})

	t.Run("HandlerErrorRedelivers", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 300, 4)
		appendAll(t, l, msgs)
		var mu sync.Mutex
		failures, lastFailedFirst := 0, chat.ID(0)
		c := newCollector(func(batch []chat.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if lastFailedFirst != 0 && batch[0].ID != lastFailedFirst {
				t.Errorf("after a failed batch starting at %d, next batch starts at %d: messages skipped or reordered", lastFailedFirst, batch[0].ID)
			}
			lastFailedFirst = 0
			if failures < 3 {
				failures++
				lastFailedFirst = batch[0].ID
				return errors.New("injected failure")
			}
			return nil
		})
		runConsumer(t, l, "g", c.handle)
		c.waitCount(t, len(msgs))
		c.checkExact(t, msgs)
		mu.Lock()
		defer mu.Unlock()
		if failures != 3 {
			t.Fatalf("handler failed %d times, want 3", failures)
		}
	})

	t.Run("ResumeAfterCommitted", func(t *testing.T) {
		l := open(t)
		first, second := splitMessages(LogMessages(t, 100, 3), 50)
		appendAll(t, l, first)
		phase2 := make(chan struct{})
		ctx1, cancel1 := context.WithCancel(context.Background())
		c1 := newCollector(func(batch []chat.Message) error {
			select {
			case <-phase2:
				// Stop in the middle of a batch: it must not count as
				// committed.
				cancel1()
				return errors.New("stopping")
			default:
				return nil
			}
		})
		done1 := startConsumer(ctx1, l, "g", c1.handle)
		c1.waitCount(t, len(first))
		close(phase2)
		appendAll(t, l, second)
		select {
		case err := <-done1:
			if err != nil {
				t.Fatalf("consume returned %v after cancel, want nil", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("consume did not return after its context ended")
		}
		c1.checkExact(t, first)

		c2 := newCollector(nil)
		runConsumer(t, l, "g", c2.handle)
		c2.waitCount(t, len(second))
		// A clean stop commits what was handled: the new consumer resumes
		// right after it, with nothing committed seen twice.
		c2.checkExact(t, second)
	})

	t.Run("ConcurrentConsumersShareGroup", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 1000, 10)
		c := newCollector(nil)
		runConsumer(t, l, "g", c.handle)
		runConsumer(t, l, "g", c.handle)
		for i := 0; i < len(msgs); i += 100 {
			appendAll(t, l, msgs[i:i+100])
		}
		c.waitDistinct(t, msgs)
		waitLag(t, l, "g", 0)
	})

	t.Run("Lag", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 120, 2)
		appendAll(t, l, msgs)
		waitLag(t, l, "lag", int64(len(msgs)))
		c := newCollector(nil)
		runConsumer(t, l, "lag", c.handle)
		c.waitCount(t, len(msgs))
		waitLag(t, l, "lag", 0)
		more := LogMessages(t, 30, 2)
		appendAll(t, l, more)
		c.waitCount(t, len(msgs)+len(more))
		waitLag(t, l, "lag", 0)
	})

	t.Run("BigBatch", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 5000, 7)
		appendAll(t, l, msgs)
		c := newCollector(nil)
		runConsumer(t, l, "big", c.handle)
		c.waitCount(t, len(msgs))
		c.checkExact(t, msgs)
		waitLag(t, l, "big", 0)
	})

	t.Run("EmptyAppend", func(t *testing.T) {
		l := open(t)
		appendAll(t, l, nil)
	})
}

// idGen is shared so messages of every test have distinct, increasing IDs.
var (
	idGenOnce sync.Once
	idGen     *chat.IDGen
)

// LogMessages returns n messages spread round-robin over rooms rooms, with
// increasing IDs, as ingest would produce them.
func LogMessages(tb testing.TB, n, rooms int) []chat.Message {
	tb.Helper()
	idGenOnce.Do(func() { idGen, _ = chat.NewIDGen(1) })
	msgs := make([]chat.Message, n)
	for i := range msgs {
		id, at := idGen.Next()
		room := chat.ID(1000 + i%rooms)
		msgs[i] = chat.Message{
			ID: id, RoomID: room, UserID: chat.ID(10 + i%3), Username: fmt.Sprintf("user%d", i%3),
			Body: fmt.Sprintf("message %d <b>&</b> ünïcödé 🎉", i), CreatedAt: at,
		}
		if i%2 == 0 {
			msgs[i].Nonce = fmt.Sprintf("nonce-%d", id)
		}
	}
	return msgs
}

func splitMessages(msgs []chat.Message, n int) ([]chat.Message, []chat.Message) {
	return msgs[:n], msgs[n:]
}

func appendAll(tb testing.TB, l chat.Log, msgs []chat.Message) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.Append(ctx, msgs); err != nil {
		tb.Fatalf("append %d messages: %v", len(msgs), err)
	}
}

func startConsumer(ctx context.Context, l chat.Log, group string, handle func(context.Context, []chat.Message) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.Consume(ctx, group, handle) }()
	return done
}

// runConsumer consumes until the test ends, then checks Consume returned nil.
func runConsumer(tb testing.TB, l chat.Log, group string, handle func(context.Context, []chat.Message) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := startConsumer(ctx, l, group, handle)
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("consume %s returned %v after cancel, want nil", group, err)
			}
		case <-time.After(60 * time.Second):
			tb.Errorf("consume %s did not return after its context ended", group)
		}
	})
}

func waitLag(tb testing.TB, l chat.Log, group string, want int64) {
	tb.Helper()
	var got int64
	var err error
	poll(tb, fmt.Sprintf("lag of %s to be %d", group, want), func() bool {
		got, err = l.Lag(context.Background(), group)
		return err == nil && got == want
	}, func() string { return fmt.Sprintf("last lag %d, err %v", got, err) })
}

// poll waits generously for cond: these are correctness tests, not timing
// tests, and CI machines are slow.
func poll(tb testing.TB, what string, cond func() bool, detail func() string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s: %s", what, detail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collector records the batches a handler accepted.
type collector struct {
	mu     sync.Mutex
	decide func([]chat.Message) error // nil: accept everything
	got    []chat.Message
	empty  int
}

func newCollector(decide func([]chat.Message) error) *collector {
	return &collector{decide: decide}
}

func (c *collector) handle(_ context.Context, batch []chat.Message) error {
	if len(batch) == 0 {
		c.mu.Lock()
		c.empty++
		c.mu.Unlock()
		return nil
	}
	if c.decide != nil {
		if err := c.decide(batch); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, batch...)
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *collector) snapshot() []chat.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chat.Message(nil), c.got...)
}

func (c *collector) waitCount(tb testing.TB, n int) {
	tb.Helper()
	poll(tb, fmt.Sprintf("%d messages", n), func() bool { return c.count() >= n },
		func() string { return fmt.Sprintf("got %d", c.count()) })
}

func (c *collector) waitDistinct(tb testing.TB, want []chat.Message) {
	tb.Helper()
	missing := 0
	poll(tb, fmt.Sprintf("all %d messages", len(want)), func() bool {
		seen := map[chat.ID]bool{}
		for _, m := range c.snapshot() {
			seen[m.ID] = true
		}
		missing = 0
		for _, m := range want {
			if !seen[m.ID] {
				missing++
			}
		}
		return missing == 0
	}, func() string { return fmt.Sprintf("%d missing", missing) })
	checkContents(tb, want, c.snapshot())
}

// checkExact requires the handled messages to be want exactly: per room the
// same messages in the same order, none missing, none twice.
func (c *collector) checkExact(tb testing.TB, want []chat.Message) {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.empty > 0 {
		tb.Errorf("handler got %d empty batches", c.empty)
	}
	byRoom := func(msgs []chat.Message) map[chat.ID][]chat.Message {
		r := map[chat.ID][]chat.Message{}
		for _, m := range msgs {
			r[m.RoomID] = append(r[m.RoomID], m)
		}
		return r
	}
	w, g := byRoom(want), byRoom(c.got)
	if len(c.got) != len(want) {
		tb.Errorf("handled %d messages, want %d", len(c.got), len(want))
	}
	for room, wm := range w {
		gm := g[room]
		if len(gm) != len(wm) {
			tb.Errorf("room %d: handled %d messages, want %d", room, len(gm), len(wm))
		}
		for i := 0; i < len(wm) && i < len(gm); i++ {
			if gm[i].ID != wm[i].ID {
				tb.Fatalf("room %d position %d: got message %d, want %d (order broken, or a message skipped or repeated)", room, i, gm[i].ID, wm[i].ID)
			}
		}
	}
	for room := range g {
		if _, ok := w[room]; !ok {
			tb.Errorf("handled messages of unexpected room %d", room)
		}
	}
	checkContents(tb, want, c.got)
}

// checkContents requires every handled message to equal the appended one.
func checkContents(tb testing.TB, want, got []chat.Message) {
	tb.Helper()
	byID := make(map[chat.ID]chat.Message, len(want))
	for _, m := range want {
		byID[m.ID] = m
	}
	for _, g := range got {
		w, ok := byID[g.ID]
		if !ok {
			tb.Fatalf("handled message %d that was not appended", g.ID)
		}
		if g.RoomID != w.RoomID || g.UserID != w.UserID || g.Username != w.Username || g.Body != w.Body ||
			g.Nonce != w.Nonce || !g.CreatedAt.Equal(w.CreatedAt) || (g.EditedAt == nil) != (w.EditedAt == nil) {
			tb.Fatalf("message %d changed in the log:\n got %+v\nwant %+v", g.ID, g, w)
		}
	}
}
