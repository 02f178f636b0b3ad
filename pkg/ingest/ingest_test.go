package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/ingest"
	"github.com/chatd/chatd/pkg/jetstream"
	"github.com/chatd/chatd/pkg/natsbus"
)

// memNonces is an in-memory NonceCache with the semantics of pkg/redis.
type memNonces struct {
	mu sync.Mutex
	m  map[string]chat.Message
}

func newMemNonces() *memNonces { return &memNonces{m: map[string]chat.Message{}} }

func nonceKey(m chat.Message) string { return m.UserID.String() + "/" + m.Nonce }

func (c *memNonces) ClaimNonces(_ context.Context, msgs []chat.Message, _ time.Duration) ([]*chat.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*chat.Message, len(msgs))
	for i, m := range msgs {
		if m.Nonce == "" {
			continue
		}
		if first, ok := c.m[nonceKey(m)]; ok {
			out[i] = &first
			continue
		}
		c.m[nonceKey(m)] = m
	}
	return out, nil
}

func (c *memNonces) claimed(user chat.ID, nonce string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[user.String()+"/"+nonce]
	return ok
}

type memRecent struct {
	mu   sync.Mutex
	msgs []chat.Message
}

func (r *memRecent) AddRecent(_ context.Context, msgs []chat.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// gateLog wraps a log: Append waits while the gate is closed and fails
// while fail > 0.
type gateLog struct {
	chat.Log
	mu   sync.Mutex
	gate chan struct{} // nil: open
	fail atomic.Int32
	// failAfter > 0: the next Appends reach the log and then report an
	// error, as a timeout after the broker stored the batch would.
	failAfter atomic.Int32
}

func (g *gateLog) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateLog) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gateLog) Append(ctx context.Context, msgs []chat.Message) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if g.failAfter.Add(-1) >= 0 {
		if err := g.Log.Append(ctx, msgs); err != nil {
			return err
		}
		return errors.New("ack lost after the append reached the log")
	}
	if g.fail.Add(-1) >= 0 {
		return errors.New("disk on fire at /var/lib/secret")
	}
	return g.Log.Append(ctx, msgs)
}

type env struct {
	embedded *natsbus.Embedded
	log      *jetstream.Log
	glog     *gateLog
	nonces   *memNonces
	recent   *memRecent
	ids      *chat.IDGen
	// pipelined gives the server an ingest.AsyncLog (asyncGateLog), so
	// batches overlap; local sends through Server.Send instead of NATS.
	pipelined, local bool
	server           *ingest.Server // the last one started
	backlog          func() time.Duration
}

// asyncGateLog is gateLog as an ingest.AsyncLog: appends run one at a time
// in call order on a worker, as a JetStream connection keeps them, and the
// gate holds their completion, so several batches can be in flight.
type asyncGateLog struct {
	*gateLog
	once sync.Once
	jobs chan asyncJob
}

type asyncJob struct {
	ctx  context.Context
	msgs []chat.Message
	done chan error
}

func (a *asyncGateLog) AppendAsync(ctx context.Context, msgs []chat.Message) func() error {
	a.once.Do(func() {
		a.jobs = make(chan asyncJob, 1024)
		go func() {
			for j := range a.jobs {
				j.done <- a.gateLog.Append(j.ctx, j.msgs)
			}
		}()
	})
	j := asyncJob{ctx: ctx, msgs: msgs, done: make(chan error, 1)}
	a.jobs <- j
	return func() error { return <-j.done }
}

// mode is one way of running the server: sync or pipelined batches, sends
// over NATS or in process.
type mode struct{ pipelined, local bool }

func (m mode) String() string {
	return fmt.Sprintf("pipelined=%v/local=%v", m.pipelined, m.local)
}

var modes = []mode{{false, false}, {false, true}, {true, false}, {true, true}}

// forModes runs test once per mode, each with a fresh env.
func forModes(t *testing.T, test func(t *testing.T, e *env)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			e := newEnv(t)
			e.pipelined, e.local = m.pipelined, m.local
			test(t, e)
		})
	}
}

func logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{StoreDir: tb.TempDir()}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
	nc := connect(tb, e)
	l, err := jetstream.NewLog(context.Background(), nc, jetstream.LogConfig{}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ids, _ := chat.NewIDGen(3)
	gl := &gateLog{Log: l}
	gl.fail.Store(0)
	return &env{embedded: e, log: l, glog: gl, nonces: newMemNonces(), recent: &memRecent{}, ids: ids}
}

func connect(tb testing.TB, e *natsbus.Embedded) *nats.Conn {
	tb.Helper()
	nc, err := natsbus.Connect(context.Background(), natsbus.ConnectConfig{Embedded: e, Name: tb.Name()}, logger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// start runs an ingest server on its own connection until the test ends.
// stop cancels it and returns Run's result; it may be called more than once.
func (e *env) start(tb testing.TB, cfg ingest.Config) (s *ingest.Server, stop func() error) {
	tb.Helper()
	var l chat.Log = e.glog
	if e.pipelined {
		l = &asyncGateLog{gateLog: e.glog}
	}
	s = ingest.NewServer(cfg, ingest.Deps{NC: connect(tb, e.embedded), Log: l, IDs: e.ids, Nonces: e.nonces, Recent: e.recent, Backlog: e.backlog}, logger(tb))
	e.server = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = errors.New("ingest did not stop")
			}
		})
		return runErr
	}
	tb.Cleanup(func() {
		e.glog.open()
		if err := stop(); err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	// Run subscribes asynchronously: wait until a request finds it.
	nc := connect(tb, e.embedded)
	poll(tb, "ingest to subscribe", func() bool {
		_, err := nc.Request(chat.SubjectIngest, []byte("x"), time.Second)
		return err == nil
	})
	return s, stop
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

func (e *env) client(tb testing.TB, timeout time.Duration) chat.Sender {
	if e.local {
		return e.server.Local(timeout)
	}
	return ingest.NewClient(connect(tb, e.embedded), timeout)
}

func req(room, user int, body, nonce string) chat.SendRequest {
	return chat.SendRequest{RoomID: chat.ID(room), UserID: chat.ID(user), Username: fmt.Sprintf("user%d", user), Body: body, Nonce: nonce}
}

// sendConcurrently sends n requests at once, with nonces n<first> on, each
// from its own goroutine; their answers come on the returned channel.
func sendConcurrently(c chat.Sender, first, n int) <-chan error {
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := c.Send(context.Background(), req(1, 1, "b", fmt.Sprintf("n%d", first+i)))
			errs <- err
		}()
	}
	return errs
}

// storedCount is how many messages the log holds.
func storedCount(tb testing.TB, l *jetstream.Log) int64 {
	tb.Helper()
	return int64(len(storedMessages(tb, l)))
}

// storedMessages reads everything in the log, up to its end when called,
// with Replay. (A fresh consumer group read until its lag was 0 could stop
// before its first entry: a group just created may report no lag yet.)
func storedMessages(tb testing.TB, l *jetstream.Log) []chat.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []chat.Message
	if err := l.Replay(ctx, time.Time{}, func(ms []chat.Message) error {
		got = append(got, ms...)
		return nil
	}); err != nil {
		tb.Fatalf("read the log: %v", err)
	}
	return got
}

func TestSendEndToEnd(t *testing.T) { forModes(t, testSendEndToEnd) }

func testSendEndToEnd(t *testing.T, e *env) {
	e.start(t, ingest.Config{})
	c := e.client(t, 0)
	watch := connect(t, e.embedded)
	frames, err := watch.SubscribeSync(chat.SubjectRoomPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	var last chat.ID
	var sent []chat.Message
	for i := range 20 {
		body := fmt.Sprintf("  hello %d <script>&amp; ünï 🎉\t\"quoted\" \\ ", i)
		m, err := c.Send(context.Background(), req(100+i%2, 7, body, fmt.Sprintf("n-%d", i)))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if m.ID <= last {
			t.Fatalf("send %d: id %d not above %d", i, m.ID, last)
		}
		last = m.ID
		if m.Body != body || m.RoomID != chat.ID(100+i%2) || m.UserID != 7 || m.Username != "user7" || m.CreatedAt.IsZero() {
			t.Fatalf("send %d: got %+v", i, m)
		}
		sent = append(sent, m)
	}
	for i, m := range sent {
		f, err := frames.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Subject != chat.RoomSubject(m.RoomID) || f.Header.Get(chat.HeaderType) != "message" || f.Header.Get(chat.HeaderUser) != "7" {
			t.Fatalf("frame %d: subject %s headers %v", i, f.Subject, f.Header)
		}
		mj, _ := json.Marshal(m)
		if want := `{"type":"message","message":` + string(mj) + `}`; string(f.Data) != want {
			t.Fatalf("frame %d:\n got %s\nwant %s", i, f.Data, want)
		}
	}
	if n := storedCount(t, e.log); n != 20 {
		t.Fatalf("log holds %d messages, want 20", n)
	}
	e.recent.mu.Lock()
	defer e.recent.mu.Unlock()
	if len(e.recent.msgs) != 20 {
		t.Fatalf("recent holds %d, want 20", len(e.recent.msgs))
	}
}

func TestDuplicateNonce(t *testing.T) { forModes(t, testDuplicateNonce) }

func testDuplicateNonce(t *testing.T, e *env) {
	e.start(t, ingest.Config{})
	c := e.client(t, 0)
	watch := connect(t, e.embedded)
	frames, _ := watch.SubscribeSync(chat.RoomSubject(5))
	_ = watch.Flush()

	first, err := c.Send(context.Background(), req(5, 1, "once", "same"))
	if err != nil {
		t.Fatal(err)
	}
	// Sequential retries and a burst of concurrent ones, which land in one
	// batch together.
	var wg sync.WaitGroup
	ids := make([]chat.ID, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := c.Send(context.Background(), req(5, 1, "once", "same"))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = m.ID
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if id != first.ID {
			t.Fatalf("retry %d: id %d, want %d", i, id, first.ID)
		}
	}
	// The same nonce from another user is another message.
	other, err := c.Send(context.Background(), req(5, 2, "once", "same"))
	if err != nil || other.ID == first.ID {
		t.Fatalf("other user: %v, %v", other.ID, err)
	}
	// Concurrent first sends of a new nonce: one message for all.
	got := map[chat.ID]int{}
	var mu sync.Mutex
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := c.Send(context.Background(), req(5, 3, "burst", "fresh"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[m.ID]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(got) != 1 {
		t.Fatalf("concurrent sends with one nonce stored %d messages: %v", len(got), got)
	}
	if n := storedCount(t, e.log); n != 3 {
		t.Fatalf("log holds %d messages, want 3", n)
	}
	for i := range 3 {
		if _, err := frames.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if f, err := frames.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("duplicate fanned out again: %s", f.Data)
	}
}

func TestTwoServersOneQueueGroup(t *testing.T) {
	e := newEnv(t)
	s1, _ := e.start(t, ingest.Config{})
	s2, _ := e.start(t, ingest.Config{})
	c := e.client(t, 30*time.Second)
	before := s1.Stats().Received + s2.Stats().Received
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Send(context.Background(), req(1+i%4, 9, "q", fmt.Sprintf("n%d", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := storedCount(t, e.log); n != 300 {
		t.Fatalf("log holds %d messages, want 300", n)
	}
	if got := s1.Stats().Received + s2.Stats().Received - before; got != 300 {
		t.Fatalf("servers received %d requests together, want 300", got)
	}
}

func TestBufferFullIsUnavailable(t *testing.T) {
	e := newEnv(t)
	s, _ := e.start(t, ingest.Config{Buffer: 2, MaxBatch: 1})
	e.glog.close()
	c := e.client(t, 60*time.Second)
	const n = 10
	errs := sendConcurrently(c, 0, n)
	// One request is in Append, two wait in the buffer; the rest must be
	// refused at once, not queued.
	busy := 0
	for busy < n-3 {
		err := <-errs
		if err == nil {
			t.Fatal("a send succeeded while the log was blocked")
		}
		if chat.ErrorCode(err) != chat.EUNAVAILABLE || chat.ErrorMessage(err) != "server busy, retry" {
			t.Fatalf("got %v, want busy", err)
		}
		busy++
	}
	if got := s.Stats().RejectedBusy; got != n-3 {
		t.Fatalf("rejected_busy %d, want %d", got, n-3)
	}
	if s.Stats().BufferLen != 2 {
		t.Fatalf("buffer length %d, want 2", s.Stats().BufferLen)
	}
	e.glog.open()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("buffered send: %v", err)
		}
	}
}

// While the sinks are further behind than MaxBacklog, a batch waits for
// them to catch up; sends that come in meanwhile join it.
func TestPacedWhileSinksLag(t *testing.T) { forModes(t, testPacedWhileSinksLag) }

func testPacedWhileSinksLag(t *testing.T, e *env) {
	var backlog atomic.Int64
	backlog.Store(int64(5 * time.Second))
	e.backlog = func() time.Duration { return time.Duration(backlog.Load()) }
	s, _ := e.start(t, ingest.Config{MaxBacklog: time.Second, MaxPause: time.Hour})
	c := e.client(t, time.Minute)
	const n = 3
	errs := sendConcurrently(c, 0, n)
	poll(t, "the sends to reach ingest", func() bool { return s.Stats().Received == n })
	select {
	case err := <-errs:
		t.Fatalf("a send was answered while persistence lagged: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if st := s.Stats(); st.Batches != 0 {
		t.Fatalf("%d batches appended while persistence lagged", st.Batches)
	}
	backlog.Store(int64(500 * time.Millisecond))
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("send after catching up: %v", err)
		}
	}
	st := s.Stats()
	if st.Batches != 1 || st.Paused <= 0 {
		t.Fatalf("batches %d, paused %v: want the three sends in one paced batch", st.Batches, st.Paused)
	}
	if got := storedCount(t, e.log); got != n {
		t.Fatalf("stored %d, want %d", got, n)
	}
}

// Under load a batch lingers for more sends: a send that comes right after
// the previous batch began waits Linger, and what arrives meanwhile joins
// its batch. The first send, with no batch before it, goes at once.
func TestLingerJoinsSends(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			e := newEnv(t)
			e.pipelined, e.local = true, local
			s, _ := e.start(t, ingest.Config{Linger: time.Second})
			c := e.client(t, time.Minute)
			if _, err := c.Send(context.Background(), req(1, 1, "first", "n0")); err != nil {
				t.Fatal(err)
			}
			if got := s.Stats().Batches; got != 1 {
				t.Fatalf("%d batches after the first send, want 1", got)
			}
			const n = 5
			errs := sendConcurrently(c, 1, n)
			for range n {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if got := s.Stats().Batches; got != 2 {
				t.Fatalf("%d batches, want 2: the %d sends after the first in one", got, n)
			}
			if got := storedCount(t, e.log); got != n+1 {
				t.Fatalf("stored %d, want %d", got, n+1)
			}
		})
	}
}

// Pacing holds sends back only for a sink that is behind by an overload:
// not beyond paceCeiling (a rebuild), not when MaxBacklog is 0.
func TestNotPaced(t *testing.T) {
	for _, tc := range []struct {
		name       string
		backlog    time.Duration
		maxBacklog time.Duration
	}{
		{"rebuild", time.Hour, time.Second},
		{"off", 5 * time.Second, 0},
		{"caught up", 999 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.backlog = func() time.Duration { return tc.backlog }
			s, _ := e.start(t, ingest.Config{MaxBacklog: tc.maxBacklog, MaxPause: time.Hour})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := e.client(t, time.Minute).Send(ctx, req(1, 1, "b", "n")); err != nil {
				t.Fatal(err)
			}
			if p := s.Stats().Paused; p != 0 {
				t.Fatalf("paused %v", p)
			}
		})
	}
}

func TestNoIngestIsUnavailable(t *testing.T) {
	e := newEnv(t)
	_, err := e.client(t, 0).Send(context.Background(), req(1, 1, "x", ""))
	if chat.ErrorCode(err) != chat.EUNAVAILABLE || chat.ErrorMessage(err) != "no ingest available" {
		t.Fatalf("got %v", err)
	}
}

func TestAckTimeoutIsUnavailable(t *testing.T) { forModes(t, testAckTimeoutIsUnavailable) }

func testAckTimeoutIsUnavailable(t *testing.T, e *env) {
	e.start(t, ingest.Config{})
	e.glog.close()
	_, err := e.client(t, 200*time.Millisecond).Send(context.Background(), req(1, 1, "x", "n"))
	if chat.ErrorCode(err) != chat.EUNAVAILABLE || !strings.Contains(chat.ErrorMessage(err), "same nonce") {
		t.Fatalf("got %v", err)
	}
}

// After a failed append the nonce stays claimed: the retry is answered
// with the first message, appended again under the same ID, so the client
// gets one message however the failure went.
func TestAppendFailureKeepsNonce(t *testing.T) { forModes(t, testAppendFailureKeepsNonce) }

func testAppendFailureKeepsNonce(t *testing.T, outer *env) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("reached_log=%v", partial), func(t *testing.T) {
			e := newEnv(t)
			e.pipelined, e.local = outer.pipelined, outer.local
			e.start(t, ingest.Config{})
			c := e.client(t, 0)
			if partial {
				e.glog.failAfter.Store(1)
			} else {
				e.glog.fail.Store(1)
			}
			_, err := c.Send(context.Background(), req(1, 4, "x", "retry-me"))
			if chat.ErrorCode(err) != chat.EUNAVAILABLE {
				t.Fatalf("got %v, want unavailable", err)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "fire") {
				t.Fatalf("internal error text reached the client: %v", err)
			}
			m, err := c.Send(context.Background(), req(1, 4, "x", "retry-me"))
			if err != nil || m.Body != "x" {
				t.Fatalf("retry: %+v, %v", m, err)
			}
			again, err := c.Send(context.Background(), req(1, 4, "x", "retry-me"))
			if err != nil || again.ID != m.ID {
				t.Fatalf("second retry: %v (%v), want the same message %v", again.ID, err, m.ID)
			}
			// The log may hold the message more than once (the stores
			// deduplicate by ID), but only ever under one ID.
			ids := map[chat.ID]bool{}
			for _, sm := range storedMessages(t, e.log) {
				ids[sm.ID] = true
			}
			if len(ids) != 1 || !ids[m.ID] {
				t.Fatalf("log holds IDs %v, want only %v", ids, m.ID)
			}
		})
	}
}

func TestHostilePayloads(t *testing.T) {
	e := newEnv(t)
	s, _ := e.start(t, ingest.Config{})
	nc := connect(t, e.embedded)
	huge := `{"room_id":"1","user_id":"1","body":"` + strings.Repeat("a", 200<<10) + `"}`
	for name, payload := range map[string]string{
		"not json":      "hello",
		"truncated":     `{"room_id":"1",`,
		"array":         `[1,2,3]`,
		"null":          `null`,
		"empty":         ``,
		"wrong types":   `{"room_id":{},"user_id":[],"body":5}`,
		"negative id":   `{"room_id":"-5","user_id":"1","body":"x"}`,
		"no room":       `{"user_id":"1","body":"x"}`,
		"empty body":    `{"room_id":"1","user_id":"1","body":"   "}`,
		"bad utf8":      "{\"room_id\":\"1\",\"user_id\":\"1\",\"body\":\"\xff\xfe\"}",
		"nonce control": `{"room_id":"1","user_id":"1","body":"x","nonce":"a\u0001b"}`,
		"huge":          huge,
	} {
		resp, err := nc.Request(chat.SubjectIngest, []byte(payload), 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var rep chat.IngestReply
		if err := json.Unmarshal(resp.Data, &rep); err != nil || rep.Error == nil || rep.Error.Code != chat.EINVALID || rep.Message != nil {
			t.Fatalf("%s: reply %s (%v), want invalid", name, resp.Data, err)
		}
	}
	if _, err := e.client(t, 0).Send(context.Background(), req(1, 1, "still here", "")); err != nil {
		t.Fatalf("server stopped serving after hostile payloads: %v", err)
	}
	if n := storedCount(t, e.log); n != 1 {
		t.Fatalf("log holds %d, want 1", n)
	}
	if s.Stats().Invalid < 12 {
		t.Fatalf("invalid counter %d", s.Stats().Invalid)
	}
}

func TestShutdownFinishesBuffered(t *testing.T) { forModes(t, testShutdownFinishesBuffered) }

func testShutdownFinishesBuffered(t *testing.T, e *env) {
	s, stop := e.start(t, ingest.Config{MaxBatch: 2})
	e.glog.close()
	c := e.client(t, 60*time.Second)
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			_, err := c.Send(context.Background(), req(1, 1, "late", fmt.Sprintf("n%d", i)))
			errs <- err
		}()
	}
	poll(t, "requests to be buffered", func() bool { return s.Stats().Received == 10 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Give the drain a moment to begin before the log unblocks; the
	// outcome must be the same either way.
	time.Sleep(50 * time.Millisecond)
	e.glog.open()
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatalf("buffered send during shutdown: %v", err)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if n := storedCount(t, e.log); n != 10 {
		t.Fatalf("log holds %d, want 10", n)
	}
	// Stopped: no one answers any more.
	_, err := c.Send(context.Background(), req(1, 1, "after", ""))
	if chat.ErrorCode(err) != chat.EUNAVAILABLE {
		t.Fatalf("after shutdown: %v", err)
	}
}

// BenchmarkSend measures acked sends end to end (request, batch, durable
// append, reply, fanout) with many concurrent senders sharing a client
// connection, as a gateway's sockets do.
func BenchmarkSend(b *testing.B) {
	for _, senders := range []int{4, 64} {
		b.Run(fmt.Sprintf("senders=%dxGOMAXPROCS", senders), func(b *testing.B) {
			e := newEnv(b)
			s, _ := e.start(b, ingest.Config{})
			c := e.client(b, 30*time.Second)
			var n atomic.Int64
			b.SetParallelism(senders)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if _, err := c.Send(context.Background(), req(int(1+i%50), int(1+i%500), "benchmark body", fmt.Sprintf("n%d", i))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if st := s.Stats(); st.Batches > 0 {
				b.ReportMetric(float64(st.Received)/float64(st.Batches), "msgs/batch")
			}
		})
	}
}

// Without caches (a deployment without Redis) sends still work; only
// cross-batch nonce dedupe is lost.
func TestWithoutCaches(t *testing.T) {
	e := newEnv(t)
	s := ingest.NewServer(ingest.Config{}, ingest.Deps{NC: connect(t, e.embedded), Log: e.log, IDs: e.ids}, logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := e.client(t, 30*time.Second)
	var m chat.Message
	var err error
	poll(t, "a send to succeed", func() bool {
		m, err = c.Send(context.Background(), req(1, 1, "no cache", "n"))
		return err == nil
	})
	if m.Body != "no cache" {
		t.Fatalf("got %+v", m)
	}
}
