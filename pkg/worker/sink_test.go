package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/jetstream"
	"github.com/chatd/chatd/pkg/natsbus"
	"github.com/chatd/chatd/pkg/prio"
	"github.com/chatd/chatd/pkg/worker"
)

func logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelError}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

func newLog(tb testing.TB) *jetstream.Log {
	tb.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{StoreDir: tb.TempDir()}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
	nc, err := natsbus.Connect(context.Background(), natsbus.ConnectConfig{Embedded: e}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	l, err := jetstream.NewLog(context.Background(), nc, jetstream.LogConfig{}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// flakyWriter fails its first fails calls, then records what it writes.
type flakyWriter struct {
	mu    sync.Mutex
	fails int
	calls int
	got   []chat.Message
}

func (w *flakyWriter) write(_ context.Context, msgs []chat.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.fails > 0 {
		w.fails--
		return errors.New("store down")
	}
	w.got = append(w.got, msgs...)
	return nil
}

func (w *flakyWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

func run(tb testing.TB, s *worker.Sink) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("run: %v", err)
				}
			case <-time.After(60 * time.Second):
				tb.Error("sink did not stop")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func poll(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkRoomOrder(tb testing.TB, want, got []chat.Message) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("wrote %d messages, want %d", len(got), len(want))
	}
	next := map[chat.ID][]chat.ID{}
	for _, m := range want {
		next[m.RoomID] = append(next[m.RoomID], m.ID)
	}
	for _, m := range got {
		q := next[m.RoomID]
		if len(q) == 0 || q[0] != m.ID {
			exp := chat.ID(0)
			if len(q) > 0 {
				exp = q[0]
			}
			tb.Fatalf("room %d: wrote %d, expected %d next: out of order, skipped or twice", m.RoomID, m.ID, exp)
		}
		next[m.RoomID] = q[1:]
	}
}

func TestSinkRetriesUntilWritten(t *testing.T) {
	l := newLog(t)
	w := &flakyWriter{fails: 5}
	s := worker.NewSink("store", "store", l, w.write, logger(t))
	s.RetryMin, s.RetryMax = time.Millisecond, 20*time.Millisecond
	run(t, s)
	msgs := chattest.LogMessages(t, 1200, 6)
	for i := 0; i < len(msgs); i += 200 {
		if err := l.Append(context.Background(), msgs[i:i+200]); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "every message written", func() bool { return w.count() >= len(msgs) })
	poll(t, "lag 0", func() bool { n, err := s.Lag(context.Background()); return err == nil && n == 0 })
	w.mu.Lock()
	checkRoomOrder(t, msgs, w.got)
	w.mu.Unlock()
	st := s.Stats()
	if st.Errors != 5 || st.Messages != int64(len(msgs)) || st.Batches == 0 || st.LastBatchSize == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A sink stopped while its store is down commits nothing; the next one
// writes everything.
func TestSinkStoppedDuringOutageLosesNothing(t *testing.T) {
	l := newLog(t)
	down := &flakyWriter{fails: 1 << 30}
	s1 := worker.NewSink("index", "index", l, down.write, logger(t))
	s1.RetryMin, s1.RetryMax = time.Millisecond, 5*time.Millisecond
	stop1 := run(t, s1)
	msgs := chattest.LogMessages(t, 300, 3)
	if err := l.Append(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	poll(t, "failed writes", func() bool { return s1.Stats().Errors >= 3 })
	stop1()

	up := &flakyWriter{}
	s2 := worker.NewSink("index", "index", l, up.write, logger(t))
	run(t, s2)
	poll(t, "every message written", func() bool { return up.count() >= len(msgs) })
	up.mu.Lock()
	defer up.mu.Unlock()
	checkRoomOrder(t, msgs, up.got)
}

// A sink writes at the background priority while it keeps up, and at the
// normal priority a batch whose oldest message is over a second old, so a
// busy CPU cannot leave it ever further behind.
func TestSinkPriorityFollowsLag(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priority is Linux only")
	}
	prio.SetBackgroundNice(10)
	defer prio.SetBackgroundNice(0)
	l := newLog(t)
	type batch struct {
		first chat.ID
		nice  int
	}
	got := make(chan batch, 16)
	write := func(_ context.Context, msgs []chat.Message) error {
		n, err := prio.ThreadNice()
		if err != nil {
			return err
		}
		got <- batch{msgs[0].ID, n}
		return nil
	}
	s := worker.NewSink("store", "g", l, write, logger(t))
	run(t, s)

	ctx := context.Background()
	fresh := chattest.LogMessages(t, 3, 1)
	if err := l.Append(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b.first != fresh[0].ID || b.nice != 10 {
		t.Fatalf("fresh batch %+v, want written at nice 10", b)
	}
	old := chattest.LogMessages(t, 3, 1)
	for i := range old {
		old[i].CreatedAt = time.Now().Add(-5 * time.Second)
	}
	if err := l.Append(ctx, old); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b.first != old[0].ID || b.nice != 0 {
		t.Fatalf("lagging batch %+v, want written at nice 0", b)
	}
}

// Behind is the age of the oldest message of the batch being written: 0
// while the sink waits for entries, and 0 while its writes fail, so a broken
// backend never makes ingest hold live sends back.
func TestSinkBehind(t *testing.T) {
	l := newLog(t)
	entered := make(chan struct{}, 1)
	release := make(chan error)
	write := func(ctx context.Context, _ []chat.Message) error {
		entered <- struct{}{}
		select {
		case err := <-release:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s := worker.NewSink("index", "index", l, write, logger(t))
	s.RetryMin, s.RetryMax = time.Millisecond, time.Millisecond
	run(t, s)
	if b := s.Behind(time.Now()); b != 0 {
		t.Fatalf("idle sink behind %v", b)
	}
	msgs := chattest.LogMessages(t, 3, 1)
	sent := time.Now().Add(-10 * time.Second)
	msgs[1].CreatedAt = sent
	if err := l.Append(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	<-entered
	if b := s.Behind(time.Now()); b < 10*time.Second || b > time.Minute {
		t.Fatalf("behind %v while writing, want the oldest message's age (10 s)", b)
	}
	release <- errors.New("index down")
	<-entered // the retry
	if b := s.Behind(time.Now()); b != 0 {
		t.Fatalf("failing sink behind %v, want 0", b)
	}
	release <- nil
	poll(t, "the batch written", func() bool { return s.Stats().Batches == 1 })
	if b := s.Behind(time.Now()); b != 0 {
		t.Fatalf("caught-up sink behind %v", b)
	}
}
