package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/jetstream"
	"github.com/chatd/chatd/pkg/natsbus"
)

func logger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

// conn starts an embedded NATS server in a temp dir and connects in process.
func conn(tb testing.TB) *nats.Conn {
	tb.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{StoreDir: tb.TempDir()}, logger(tb))
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
	nc, err := natsbus.Connect(context.Background(), natsbus.ConnectConfig{Embedded: e, Name: tb.Name()}, logger(tb))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

var streamSeq atomic.Int64

func openLog(tb testing.TB, nc *nats.Conn, cfg jetstream.LogConfig) *jetstream.Log {
	tb.Helper()
	n := streamSeq.Add(1)
	cfg.Stream = fmt.Sprintf("TEST_%d", n)
	cfg.SubjectPrefix = fmt.Sprintf("test%d.log", n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := jetstream.NewLog(ctx, nc, cfg, logger(tb))
	if err != nil {
		tb.Fatalf("new log: %v", err)
	}
	return l
}

func TestConformance(t *testing.T) {
	nc := conn(t)
	chattest.Log(t, func(t *testing.T) chat.Log {
		// Short retries keep the redelivery subtests quick.
		return openLog(t, nc, jetstream.LogConfig{RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	})
}

// A retried Append inside the duplicate window must not store twice.
func TestAppendIsIdempotent(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	msgs := chattest.LogMessages(t, 100, 2) // two entries: 64 and 36
	ctx := context.Background()
	for range 2 {
		if err := l.Append(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if lag, err := l.Lag(ctx, "g"); err != nil || lag != 2 {
		t.Fatalf("lag %d entries, %v; want 2", lag, err)
	}
	if s := l.Stats(); s.Duplicates != 100 || s.Appended != 200 || s.Entries != 4 {
		t.Fatalf("stats %+v; want 100 duplicates of 200 appended in 4 entries", s)
	}
}

// startConsume runs l.Consume for group in the background and sends every
// message it hands over to got; done gets Consume's result.
func startConsume(ctx context.Context, l *jetstream.Log, group string, buf int) (got chan chat.Message, done chan error) {
	got, done = make(chan chat.Message, buf), make(chan error, 1)
	go func() {
		done <- l.Consume(ctx, group, func(_ context.Context, b []chat.Message) error {
			for _, m := range b {
				got <- m
			}
			return nil
		})
	}()
	return got, done
}

// consumeAll consumes group until want messages arrived and returns them.
func consumeAll(t *testing.T, l *jetstream.Log, group string, want int) []chat.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got, done := startConsume(ctx, l, group, want+100)
	defer func() { cancel(); <-done }()
	out := make([]chat.Message, 0, want)
	for len(out) < want {
		select {
		case m := <-got:
			out = append(out, m)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d messages arrived", len(out), want)
		}
	}
	return out
}

// Consecutive messages share a stream entry, up to EntryMessages of them
// and 256 KB; consumers get every message in append order either way.
func TestEntriesHoldSeveralMessages(t *testing.T) {
	nc := conn(t)
	ctx := context.Background()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subjects := func(l *jetstream.Log) map[string]uint64 {
		t.Helper()
		st, err := js.Stream(ctx, l.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, natsjs.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects
	}
	n := streamSeq.Load() + 1
	l := openLog(t, nc, jetstream.LogConfig{EntryMessages: 10})

	mixed := chattest.LogMessages(t, 25, 3) // three rooms: entries of 10, 10, 5
	oneRoom := chattest.LogMessages(t, 4, 1)
	for i := range oneRoom {
		oneRoom[i].RoomID = 77
	}
	// Bodies of 4,000 characters, each escaped to 24,000 bytes of JSON:
	// ten would be 240 KB, eleven too many for one entry.
	big := chattest.LogMessages(t, 12, 1)
	for i := range big {
		big[i].RoomID = 78
		big[i].Body = strings.Repeat("\x01", 4000)
	}
	for _, b := range [][]chat.Message{mixed, oneRoom, big} {
		if err := l.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{
		fmt.Sprintf("test%d.log.rooms", n): 3,
		fmt.Sprintf("test%d.log.77", n):    1,
		fmt.Sprintf("test%d.log.78", n):    2,
	}
	if got := subjects(l); !maps.Equal(got, want) {
		t.Fatalf("entries by subject %v, want %v", got, want)
	}
	if s := l.Stats(); s.Appended != 41 || s.Entries != 6 {
		t.Fatalf("stats %+v; want 41 messages in 6 entries", s)
	}
	all := slices.Concat(mixed, oneRoom, big)
	got := consumeAll(t, l, "g", len(all))
	for i := range all {
		if got[i].ID != all[i].ID || got[i].RoomID != all[i].RoomID || got[i].Body != all[i].Body {
			t.Fatalf("message %d: got %d in room %d, want %d in room %d", i, got[i].ID, got[i].RoomID, all[i].ID, all[i].RoomID)
		}
	}
	if s := l.Stats(); s.Delivered != 41 || s.Committed != 41 {
		t.Fatalf("stats %+v; want 41 delivered and committed", s)
	}
}

// A log entry that is not a message is terminated and counted; the
// messages around it still reach the handler.
func TestUndecodableEntryDoesNotStopConsumer(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	n := streamSeq.Load()
	msgs := chattest.LogMessages(t, 10, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := l.Append(ctx, msgs[:5]); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"not json", `{"id":"x"}`, `{"type":"room_deleted"}`, "", "\n\n"} {
		if _, err := nc.Request(fmt.Sprintf("test%d.log.1", n), []byte(bad), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// An entry of several messages with bad lines among them: the good
	// ones are handled, each bad line is counted.
	mixed := string(msgs[5].JSON()) + "\nnot json\n" + string(msgs[6].JSON()) + "\n{}"
	if _, err := nc.Request(fmt.Sprintf("test%d.log.rooms", n), []byte(mixed), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// An entry of one message is one JSON object, as entries were before
	// they held several.
	if _, err := nc.Request(fmt.Sprintf("test%d.log.1", n), msgs[7].JSON(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, msgs[8:]); err != nil {
		t.Fatal(err)
	}
	got, done := startConsume(ctx, l, "g", 100)
	for i := range msgs {
		select {
		case m := <-got:
			if m.ID != msgs[i].ID {
				t.Fatalf("message %d: got %d, want %d", i, m.ID, msgs[i].ID)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d never arrived", i)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		lag, err := l.Lag(ctx, "g")
		if err == nil && lag == 0 && l.Stats().DecodeErrors == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %d (%v), decode errors %d; want 0 and 7", lag, err, l.Stats().DecodeErrors)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestInvalidGroup(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	err := l.Consume(context.Background(), "a.b", func(context.Context, []chat.Message) error { return nil })
	if chat.ErrorCode(err) != chat.EINVALID {
		t.Fatalf("got %v, want invalid", err)
	}
}

// BenchmarkAppend measures durable appends of ingest-sized batches
// (file storage, in-process connection).
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			nc := conn(b)
			l := openLog(b, nc, jetstream.LogConfig{})
			msgs := chattest.LogMessages(b, size*b.N, 16)
			b.ResetTimer()
			for i := range b.N {
				if err := l.Append(context.Background(), msgs[i*size:(i+1)*size]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// Appends started one after another without waiting reach the stream in
// call order, and each wait reports its own batch.
func TestAppendAsyncKeepsCallOrder(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	msgs := chattest.LogMessages(t, 200, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []func() error
	for i := 0; i < len(msgs); i += 10 {
		waits = append(waits, l.AppendAsync(ctx, msgs[i:i+10]))
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if s := l.Stats(); s.Appended != 200 || s.AppendErrors != 0 {
		t.Fatalf("stats %+v", s)
	}
	got := make(chan chat.Message, len(msgs))
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		_ = l.Consume(ctx, "g", func(_ context.Context, b []chat.Message) error {
			for _, m := range b {
				got <- m
			}
			return nil
		})
	}()
	for i := range msgs {
		select {
		case m := <-got:
			if m.ID != msgs[i].ID || m.Body != msgs[i].Body || m.Nonce != msgs[i].Nonce || !m.CreatedAt.Equal(msgs[i].CreatedAt) {
				t.Fatalf("entry %d: got %+v, want %+v", i, m, msgs[i])
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("entry %d never arrived", i)
		}
	}
	if w := l.AppendAsync(ctx, nil); w() != nil {
		t.Fatal("empty append failed")
	}
}

// On a closed connection the wait reports the failure instead of hanging.
func TestAppendAsyncFailure(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{AppendTimeout: 5 * time.Second})
	nc.Close()
	err := l.AppendAsync(context.Background(), chattest.LogMessages(t, 3, 1))()
	if err == nil {
		t.Fatal("append on a closed connection succeeded")
	}
	if l.Stats().AppendErrors != 1 {
		t.Fatalf("append errors %d, want 1", l.Stats().AppendErrors)
	}
}

// Replay hands over, in log order, every message appended since a time and
// up to the end of the log when it began; it skips entries that are not
// messages and moves no consumer group.
func TestReplay(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	n := streamSeq.Load()
	ctx := context.Background()
	replay := func(since time.Time) []chat.Message {
		t.Helper()
		var got []chat.Message
		if err := l.Replay(ctx, since, func(b []chat.Message) error {
			got = append(got, b...) // copies: Replay reuses its slice
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := replay(time.Time{}); len(got) != 0 {
		t.Fatalf("empty log replayed %d messages", len(got))
	}

	old := chattest.LogMessages(t, 700, 3) // more than one fetch
	if err := l.Append(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(fmt.Sprintf("test%d.log.1", n), []byte("not json"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the log's clock must move past the old batch
	since := time.Now()
	time.Sleep(20 * time.Millisecond)
	recent := chattest.LogMessages(t, 30, 2)
	if err := l.Append(ctx, recent); err != nil {
		t.Fatal(err)
	}

	ids := func(ms []chat.Message) []chat.ID {
		out := make([]chat.ID, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	if got, want := ids(replay(time.Time{})), ids(append(slices.Clone(old), recent...)); !slices.Equal(got, want) {
		t.Fatalf("replay from the start: %d messages, want %d in log order", len(got), len(want))
	}
	got := replay(since)
	if !slices.Equal(ids(got), ids(recent)) {
		t.Fatalf("replay since: got %v, want %v", ids(got), ids(recent))
	}
	if got[0].Body != recent[0].Body || got[0].RoomID != recent[0].RoomID {
		t.Fatalf("replayed %+v, appended %+v", got[0], recent[0])
	}
	if got := replay(time.Now().Add(time.Hour)); len(got) != 0 {
		t.Fatalf("replay from the future: %d messages", len(got))
	}
	// No group moved: a consumer still gets every entry (700 messages
	// in 11, the bad one, 30 in 1).
	if lag, err := l.Lag(ctx, "g"); err != nil || lag != 13 {
		t.Fatalf("lag %d, %v; want 13 entries", lag, err)
	}
	// A handler's error stops the replay and is returned.
	boom := errors.New("boom")
	if err := l.Replay(ctx, time.Time{}, func([]chat.Message) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("handler error: got %v", err)
	}
}

// An idle consumer waits for the next entry in one long pull instead of
// polling every FetchWait, takes an entry as soon as it is appended, and
// still returns at once when its context ends.
func TestIdleConsumerWaitsInOnePull(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{IdleWait: time.Minute})
	var pulls atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+l.StreamName()+".*", func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	ctx, cancel := context.WithCancel(context.Background())
	got, done := startConsume(ctx, l, "g", 10)
	msgs := chattest.LogMessages(t, 2, 1)
	for i, m := range msgs {
		if i > 0 {
			// Idle for 15 FetchWaits: a polling consumer pulls 15 times.
			before := pulls.Load()
			time.Sleep(1500 * time.Millisecond)
			if n := pulls.Load() - before; n > 2 {
				t.Fatalf("%d pulls while idle for 1.5 s; want at most 2", n)
			}
		}
		if err := l.Append(context.Background(), []chat.Message{m}); err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-got:
			if g.ID != m.ID {
				t.Fatalf("got message %d; want %d", g.ID, m.ID)
			}
		case <-time.After(20 * time.Second): // IdleWait is a minute
			t.Fatalf("message %d not consumed", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Consume did not return after its context ended")
	}
}
