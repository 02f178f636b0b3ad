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
			logAppend(t, l, msgs[i:i+100])
		}
		c := newLogCollector(nil)
		logRunConsumer(t, l, "g1", c.handle)
		c.waitCount(t, len(msgs))
		c.checkExact(t, msgs)
	})

	t.Run("GroupsAreIndependent", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 200, 3)
		logAppend(t, l, msgs)
		a := newLogCollector(nil)
		logRunConsumer(t, l, "a", a.handle)
		a.waitCount(t, len(msgs))
		logWaitLag(t, l, "a", 0)
		// b has not consumed anything: a's progress must not be b's.
		logWaitLagIn(t, l, "b", 1, int64(len(msgs)))
		b := newLogCollector(nil)
		logRunConsumer(t, l, "b", b.handle)
		b.waitCount(t, len(msgs))
		a.checkExact(t, msgs)
		b.checkExact(t, msgs)
	})

	t.Run("HandlerErrorRedelivers", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 300, 4)
		logAppend(t, l, msgs)
		var mu sync.Mutex
		failures := 0
		c := newLogCollector(func(batch []chat.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if failures < 3 {
				failures++
				return errors.New("injected failure")
			}
			return nil
		})
		// checkExact below is the point: per room, the accepted batches
		// hold every message once and in order, so a failed batch came
		// back before anything after it in its room.
		logRunConsumer(t, l, "g", c.handle)
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
		first, second := logSplit(LogMessages(t, 100, 3), 50)
		logAppend(t, l, first)
		phase2 := make(chan struct{})
		ctx1, cancel1 := context.WithCancel(context.Background())
		c1 := newLogCollector(func(batch []chat.Message) error {
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
		done1 := logStartConsumer(ctx1, l, "g", c1.handle)
		c1.waitCount(t, len(first))
		close(phase2)
		logAppend(t, l, second)
		select {
		case err := <-done1:
			if err != nil {
				t.Fatalf("consume returned %v after cancel, want nil", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("consume did not return after its context ended")
		}
		c1.checkExact(t, first)

		c2 := newLogCollector(nil)
		logRunConsumer(t, l, "g", c2.handle)
		c2.waitCount(t, len(second))
		// A clean stop commits what was handled: the new consumer resumes
		// right after it, with nothing committed seen twice.
		c2.checkExact(t, second)
	})

	t.Run("ConcurrentConsumersShareGroup", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 1000, 10)
		c := newLogCollector(nil)
		logRunConsumer(t, l, "g", c.handle)
		logRunConsumer(t, l, "g", c.handle)
		for i := 0; i < len(msgs); i += 100 {
			logAppend(t, l, msgs[i:i+100])
		}
		c.waitDistinct(t, msgs)
		logWaitLag(t, l, "g", 0)
	})

	t.Run("Lag", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 120, 2)
		logAppend(t, l, msgs)
		logWaitLagIn(t, l, "lag", 1, int64(len(msgs)))
		c := newLogCollector(nil)
		logRunConsumer(t, l, "lag", c.handle)
		c.waitCount(t, len(msgs))
		logWaitLag(t, l, "lag", 0)
		more := LogMessages(t, 30, 2)
		logAppend(t, l, more)
		c.waitCount(t, len(msgs)+len(more))
		logWaitLag(t, l, "lag", 0)
	})

	t.Run("BigBatch", func(t *testing.T) {
		l := open(t)
		msgs := LogMessages(t, 5000, 7)
		logAppend(t, l, msgs)
		c := newLogCollector(nil)
		logRunConsumer(t, l, "big", c.handle)
		c.waitCount(t, len(msgs))
		c.checkExact(t, msgs)
		logWaitLag(t, l, "big", 0)
	})

	t.Run("EmptyAppend", func(t *testing.T) {
		l := open(t)
		logAppend(t, l, nil)
	})
}

// logIDGen is shared so messages of every test have distinct, increasing IDs.
var (
	logIDGenOnce sync.Once
	logIDGen     *chat.IDGen
)

// LogMessages returns n messages spread round-robin over rooms rooms, with
// increasing IDs, as ingest would produce them.
func LogMessages(tb testing.TB, n, rooms int) []chat.Message {
	tb.Helper()
	logIDGenOnce.Do(func() { logIDGen, _ = chat.NewIDGen(1) })
	msgs := make([]chat.Message, n)
	for i := range msgs {
		id, at := logIDGen.Next()
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

func logSplit(msgs []chat.Message, n int) ([]chat.Message, []chat.Message) {
	return msgs[:n], msgs[n:]
}

func logAppend(tb testing.TB, l chat.Log, msgs []chat.Message) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.Append(ctx, msgs); err != nil {
		tb.Fatalf("append %d messages: %v", len(msgs), err)
	}
}

func logStartConsumer(ctx context.Context, l chat.Log, group string, handle func(context.Context, []chat.Message) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.Consume(ctx, group, handle) }()
	return done
}

// logRunConsumer consumes until the test ends, then checks Consume returned nil.
func logRunConsumer(tb testing.TB, l chat.Log, group string, handle func(context.Context, []chat.Message) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := logStartConsumer(ctx, l, group, handle)
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

// logWaitLagIn waits for the group's lag to be in [lo, hi]: a log whose
// entries hold several messages lags by fewer entries than messages.
func logWaitLagIn(tb testing.TB, l chat.Log, group string, lo, hi int64) {
	tb.Helper()
	var got int64
	var err error
	logPoll(tb, fmt.Sprintf("lag of %s to be in [%d, %d]", group, lo, hi), func() bool {
		got, err = l.Lag(context.Background(), group)
		return err == nil && got >= lo && got <= hi
	}, func() string { return fmt.Sprintf("last lag %d, err %v", got, err) })
}

func logWaitLag(tb testing.TB, l chat.Log, group string, want int64) {
	tb.Helper()
	var got int64
	var err error
	logPoll(tb, fmt.Sprintf("lag of %s to be %d", group, want), func() bool {
		got, err = l.Lag(context.Background(), group)
		return err == nil && got == want
	}, func() string { return fmt.Sprintf("last lag %d, err %v", got, err) })
}

// logPoll waits generously for cond: these are correctness tests, not timing
// tests, and CI machines are slow.
func logPoll(tb testing.TB, what string, cond func() bool, detail func() string) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s: %s", what, detail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logCollector records the batches a handler accepted.
type logCollector struct {
	mu     sync.Mutex
	decide func([]chat.Message) error // nil: accept everything
	got    []chat.Message
	empty  int
}

func newLogCollector(decide func([]chat.Message) error) *logCollector {
	return &logCollector{decide: decide}
}

func (c *logCollector) handle(_ context.Context, batch []chat.Message) error {
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

func (c *logCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *logCollector) snapshot() []chat.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chat.Message(nil), c.got...)
}

func (c *logCollector) waitCount(tb testing.TB, n int) {
	tb.Helper()
	logPoll(tb, fmt.Sprintf("%d messages", n), func() bool { return c.count() >= n },
		func() string { return fmt.Sprintf("got %d", c.count()) })
}

func (c *logCollector) waitDistinct(tb testing.TB, want []chat.Message) {
	tb.Helper()
	missing := 0
	logPoll(tb, fmt.Sprintf("all %d messages", len(want)), func() bool {
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
	logCheckContents(tb, want, c.snapshot())
}

// checkExact requires the handled messages to be want exactly: per room the
// same messages in the same order, none missing, none twice.
func (c *logCollector) checkExact(tb testing.TB, want []chat.Message) {
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
	logCheckContents(tb, want, c.got)
}

// logCheckContents requires every handled message to equal the appended one.
func logCheckContents(tb testing.TB, want, got []chat.Message) {
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
