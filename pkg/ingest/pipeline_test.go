package ingest_test

import (
	"context"
	"fmt"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/ingest"
	"github.com/chatd/chatd/pkg/jetstream"
)

// The embedded log is pipelined.
var _ ingest.AsyncLog = (*jetstream.Log)(nil)

// A request handed over in process is checked like one from the network:
// Send is the same contract, reachable by whatever runs in the process.
func TestLocalSendRejectsInvalid(t *testing.T) {
	e := newEnv(t)
	e.local = true
	s, _ := e.start(t, ingest.Config{})
	c := e.client(t, 0)
	before := s.Stats() // start's probes count as invalid
	for name, r := range map[string]chat.SendRequest{
		"no room":        {UserID: 1, Body: "x"},
		"no user":        {RoomID: 1, Body: "x"},
		"negative room":  {RoomID: -1, UserID: 1, Body: "x"},
		"empty body":     {RoomID: 1, UserID: 1, Body: " \t\n"},
		"bad utf8":       {RoomID: 1, UserID: 1, Body: "a\xffb"},
		"too long":       {RoomID: 1, UserID: 1, Body: strings.Repeat("é", 4001)},
		"nonce control":  {RoomID: 1, UserID: 1, Body: "x", Nonce: "a\x00b"},
		"nonce too long": {RoomID: 1, UserID: 1, Body: "x", Nonce: strings.Repeat("n", 10000)},
		"long username":  {RoomID: 1, UserID: 1, Body: "x", Username: strings.Repeat("u", 10000)},
	} {
		m, err := c.Send(context.Background(), r)
		want := chat.EINVALID
		if name == "too long" {
			want = chat.ETOOLARGE
		}
		if chat.ErrorCode(err) != want || m.ID != 0 {
			t.Fatalf("%s: got %+v, %v; want %s", name, m, err, want)
		}
	}
	if _, err := c.Send(context.Background(), req(1, 1, "still here", "")); err != nil {
		t.Fatalf("valid send after invalid ones: %v", err)
	}
	if n := storedCount(t, e.log); n != 1 {
		t.Fatalf("log holds %d, want 1", n)
	}
	if st := s.Stats(); st.Invalid-before.Invalid != 9 || st.Received-before.Received != 1 {
		t.Fatalf("stats %+v, want 9 invalid and 1 received", st)
	}
}

// A full buffer refuses in-process sends at once too, in both batch modes.
func TestLocalSendBusy(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			e := newEnv(t)
			e.local, e.pipelined = true, pipelined
			s, _ := e.start(t, ingest.Config{Buffer: 1, MaxBatch: 1, MaxInFlight: 1})
			e.glog.close()
			c := e.client(t, 60*time.Second)
			const n = 20
			errs := sendConcurrently(c, 0, n)
			busy := 0
			poll(t, "the rest to be refused", func() bool {
				return s.Stats().RejectedBusy+s.Stats().Received == n
			})
			accepted := int(s.Stats().Received)
			for busy < n-accepted {
				err := <-errs
				if chat.ErrorCode(err) != chat.EUNAVAILABLE || chat.ErrorMessage(err) != "server busy, retry" {
					t.Fatalf("got %v, want busy", err)
				}
				busy++
			}
			// The log's gate holds at most: one batch appending, in
			// flight ones, one being prepared, one buffered.
			if accepted < 2 || accepted > 5 {
				t.Fatalf("accepted %d requests with a blocked log", accepted)
			}
			e.glog.open()
			for range accepted {
				if err := <-errs; err != nil {
					t.Fatalf("accepted send: %v", err)
				}
			}
		})
	}
}

// After Run returns, an in-process send fails at once as unavailable
// (never a panic on the closed buffer).
func TestLocalSendAfterStop(t *testing.T) {
	e := newEnv(t)
	e.local = true
	_, stop := e.start(t, ingest.Config{})
	c := e.client(t, 0)
	if _, err := c.Send(context.Background(), req(1, 1, "before", "")); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Send(context.Background(), req(1, 1, "after", ""))
			if chat.ErrorCode(err) != chat.EUNAVAILABLE {
				t.Errorf("after stop: %v", err)
			}
		}()
	}
	wg.Wait()
}

// A retry whose first attempt is still waiting for durability in an earlier
// batch is answered with that first message, and only once it is durable.
func TestRetryOfInFlightSend(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			e := newEnv(t)
			e.pipelined, e.local = true, local
			s, _ := e.start(t, ingest.Config{})
			c := e.client(t, 60*time.Second)
			watch := connect(t, e.embedded)
			frames, _ := watch.SubscribeSync(chat.RoomSubject(8))
			_ = watch.Flush()
			e.glog.close()
			type res struct {
				m   chat.Message
				err error
			}
			first, retry := make(chan res, 1), make(chan res, 1)
			go func() {
				m, err := c.Send(context.Background(), req(8, 2, "once", "in-flight"))
				first <- res{m, err}
			}()
			poll(t, "the first batch to claim", func() bool { return e.nonces.claimed(2, "in-flight") })
			go func() {
				m, err := c.Send(context.Background(), req(8, 2, "once", "in-flight"))
				retry <- res{m, err}
			}()
			poll(t, "the retry's batch", func() bool { return s.Stats().Batches >= 2 })
			select {
			case r := <-retry:
				t.Fatalf("retry answered before the first send was durable: %+v", r)
			case <-time.After(50 * time.Millisecond):
			}
			e.glog.open()
			a, b := <-first, <-retry
			if a.err != nil || b.err != nil || a.m.ID != b.m.ID || a.m.ID == 0 {
				t.Fatalf("first %+v, retry %+v: want one message", a, b)
			}
			ids := map[chat.ID]bool{}
			for _, m := range storedMessages(t, e.log) {
				ids[m.ID] = true
			}
			if len(ids) != 1 || !ids[a.m.ID] {
				t.Fatalf("log holds IDs %v, want only %v", ids, a.m.ID)
			}
			if _, err := frames.NextMsg(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			if f, err := frames.NextMsg(200 * time.Millisecond); err == nil {
				t.Fatalf("retry fanned out again: %s", f.Data)
			}
		})
	}
}

// With the real JetStream log and many small batches in flight, each room's
// messages reach the log in ID order, every acked message is there once, and
// every ack carries the message that was sent.
func TestPipelinedRoomOrder(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			e := newEnv(t)
			s := ingest.NewServer(ingest.Config{MaxBatch: 3, MaxInFlight: 8},
				ingest.Deps{NC: connect(t, e.embedded), Log: e.log, IDs: e.ids, Nonces: e.nonces, Recent: e.recent}, logger(t))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			var c chat.Sender = s.Local(30 * time.Second)
			if !local {
				c = ingest.NewClient(connect(t, e.embedded), 30*time.Second)
				poll(t, "ingest to subscribe", func() bool {
					_, err := c.Send(context.Background(), req(99, 1, "warm up", ""))
					return err == nil
				})
			}
			const n = 400
			var wg sync.WaitGroup
			var mu sync.Mutex
			acked := map[chat.ID]chat.SendRequest{}
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := req(1+i%3, 1+i%7, fmt.Sprintf("m%d", i), fmt.Sprintf("n%d", i))
					m, err := c.Send(context.Background(), r)
					if err != nil {
						t.Error(err)
						return
					}
					if m.Body != r.Body || m.RoomID != r.RoomID || m.UserID != r.UserID || m.Nonce != r.Nonce {
						t.Errorf("ack %+v for request %+v", m, r)
					}
					mu.Lock()
					acked[m.ID] = r
					mu.Unlock()
				}()
			}
			wg.Wait()
			if len(acked) != n {
				t.Fatalf("%d distinct acked IDs, want %d", len(acked), n)
			}
			last := map[chat.ID]chat.ID{}
			seen := map[chat.ID]bool{}
			for _, m := range storedMessages(t, e.log) {
				if m.RoomID == 99 {
					continue
				}
				if seen[m.ID] {
					t.Fatalf("message %v logged twice", m.ID)
				}
				seen[m.ID] = true
				if m.ID <= last[m.RoomID] {
					t.Fatalf("room %v: %v logged after %v", m.RoomID, m.ID, last[m.RoomID])
				}
				last[m.RoomID] = m.ID
			}
			for id := range acked {
				if !seen[id] {
					t.Fatalf("acked %v not in the log", id)
				}
			}
			if st := s.Stats(); st.Batches < 2 {
				t.Fatalf("only %d batches: nothing was pipelined", st.Batches)
			}
		})
	}
}

// Receivers look the fanout headers up with Header.Get, which canonicalizes
// the name: the names ingest sets directly must be canonical already.
func TestFanoutHeaderNamesAreCanonical(t *testing.T) {
	for _, h := range []string{chat.HeaderType, chat.HeaderUser, chat.HeaderNonce} {
		if c := textproto.CanonicalMIMEHeaderKey(h); c != h {
			t.Errorf("header %q is not canonical (%q)", h, c)
		}
	}
}
