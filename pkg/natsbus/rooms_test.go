package natsbus

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// roomBuses runs fn on the in-memory bus and on NATS, publisher and
// subscriber on separate connections as two processes would be.
func roomBuses(t *testing.T, fn func(t *testing.T, pub, sub chat.RoomBus)) {
	t.Run("local", func(t *testing.T) {
		b := NewLocalRooms(0, testLogger(t))
		fn(t, b, b)
	})
	t.Run("nats", func(t *testing.T) {
		e := startEmbedded(t, EmbeddedConfig{})
		fn(t, NewRooms(connect(t, ConnectConfig{Embedded: e, Name: "pub"})), NewRooms(connect(t, ConnectConfig{Embedded: e, Name: "sub"})))
	})
}

// collector gathers the frames a subscription is handed.
type collector struct {
	mu     sync.Mutex
	frames []chat.RoomFrame
	more   chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) add(fs []chat.RoomFrame) {
	c.mu.Lock()
	c.frames = append(c.frames, fs...)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) got() []chat.RoomFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chat.RoomFrame(nil), c.frames...)
}

// wait returns the frames once there are n, failing the test after 10 s.
func (c *collector) wait(t *testing.T, n int) []chat.RoomFrame {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if f := c.got(); len(f) >= n {
			return f
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("got %d frames, want %d", len(c.got()), n)
		}
	}
}

func subscribe(t *testing.T, b chat.RoomBus, room chat.ID, fn func([]chat.RoomFrame)) func() {
	t.Helper()
	unsub, err := b.SubscribeRoom(room, fn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return unsub
}

// Every field reaches the subscriber as published, each room gets only its
// own frames, and one publisher's frames arrive in order.
func TestRoomBusDeliversInOrder(t *testing.T) {
	roomBuses(t, func(t *testing.T, pub, sub chat.RoomBus) {
		a, b := newCollector(), newCollector()
		subscribe(t, sub, 1, a.add)
		subscribe(t, sub, 2, b.add)

		first := chat.RoomFrame{Type: "message", User: 42, Nonce: "n-1", Data: []byte(`{"type":"message"}`)}
		typing := chat.RoomFrame{Type: "typing", User: 7, Data: []byte(`{"type":"typing"}`)}
		if err := pub.PublishRoom(1, first); err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishRoom(2, typing); err != nil {
			t.Fatal(err)
		}
		const n = 2000
		for i := range n {
			if err := pub.PublishRoom(1, chat.RoomFrame{Type: "message", User: 42, Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		got := a.wait(t, n+1)
		if g := got[0]; g.Type != first.Type || g.User != first.User || g.Nonce != first.Nonce || string(g.Data) != string(first.Data) {
			t.Fatalf("first frame arrived as %+v, published %+v", g, first)
		}
		for i, f := range got[1:] {
			if string(f.Data) != strconv.Itoa(i) || f.Nonce != "" {
				t.Fatalf("frame %d: got data %q nonce %q", i, f.Data, f.Nonce)
			}
		}
		gb := b.wait(t, 1)
		if len(gb) != 1 || gb[0].Type != "typing" || gb[0].User != 7 || string(gb[0].Data) != string(typing.Data) {
			t.Fatalf("room 2 got %+v, want only the typing frame", gb)
		}
	})
}

// Once unsubscribe returns, no later frame is handed to the callback, and
// calling it twice is harmless.
func TestRoomBusUnsubscribe(t *testing.T) {
	roomBuses(t, func(t *testing.T, pub, sub chat.RoomBus) {
		gone, stays := newCollector(), newCollector()
		unsub := subscribe(t, sub, 1, gone.add)
		subscribe(t, sub, 1, stays.add)
		if err := pub.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte("before")}); err != nil {
			t.Fatal(err)
		}
		gone.wait(t, 1)
		unsub()
		unsub()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sub.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := pub.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte("after")}); err != nil {
				t.Fatal(err)
			}
		}
		// The remaining subscriber got all ten, so they were all routed.
		stays.wait(t, 11)
		if g := gone.got(); len(g) != 1 {
			t.Fatalf("unsubscribed callback got %d frames, want only the one before", len(g))
		}
	})
}

// A subscriber whose callback is stuck loses frames past its queue bound,
// counted, and gets the ones it kept in order once it resumes; a publisher
// never blocks on it.
func TestLocalRoomsBoundsAStuckSubscriber(t *testing.T) {
	const limit = 100
	b := NewLocalRooms(limit, testLogger(t))
	entered, release := make(chan struct{}), make(chan struct{})
	c := newCollector()
	var once sync.Once
	var calls []int // frames per call; only the drainer touches it
	subscribe(t, b, 1, func(fs []chat.RoomFrame) {
		once.Do(func() { close(entered); <-release })
		calls = append(calls, len(fs))
		c.add(fs)
	})
	if err := b.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	<-entered // the drainer holds frame 0; the queue is empty
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= limit+25; i++ {
			_ = b.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte(strconv.Itoa(i))})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publisher blocked on a stuck subscriber")
	}
	if d := b.Dropped(); d != 25 {
		t.Fatalf("dropped %d frames, want 25", d)
	}
	close(release)
	got := c.wait(t, limit+1)
	for i, f := range got {
		if string(f.Data) != strconv.Itoa(i) {
			t.Fatalf("frame %d is %q", i, f.Data)
		}
	}
	// The backlog came in batches of MaxBatch, so the gateway can write
	// each batch to a member at once.
	if want := []int{1, MaxBatch, limit - MaxBatch}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("frames per call %v, want %v", calls, want)
	}
	// After the episode the queue takes frames again.
	if err := b.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	if got := c.wait(t, limit+2); string(got[limit+1].Data) != "again" {
		t.Fatalf("last frame %q", got[limit+1].Data)
	}
}

// Subscribing, unsubscribing and publishing from many goroutines at once
// (run with -race): every subscription open for a publish gets it, and
// none is left behind.
func TestLocalRoomsConcurrent(t *testing.T) {
	b := NewLocalRooms(0, testLogger(t))
	const rooms, subsPerRoom, frames = 4, 8, 200
	var wg sync.WaitGroup
	var delivered atomic.Int64
	stop := make(chan struct{})
	// Churn: subscriptions that come and go while frames flow.
	for r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				unsub, _ := b.SubscribeRoom(chat.ID(r), func([]chat.RoomFrame) {})
				unsub()
			}
		}()
	}
	// Steady subscribers, each checking its own order.
	type steady struct {
		c    *collector
		room int
	}
	var all []steady
	for r := range rooms {
		for range subsPerRoom {
			c := newCollector()
			subscribe(t, b, chat.ID(r), func(fs []chat.RoomFrame) { delivered.Add(int64(len(fs))); c.add(fs) })
			all = append(all, steady{c, r})
		}
	}
	var pubs sync.WaitGroup
	for r := range rooms {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range frames {
				_ = b.PublishRoom(chat.ID(r), chat.RoomFrame{Type: "message", Data: fmt.Appendf(nil, "%d", i)})
			}
		}()
	}
	pubs.Wait()
	for _, s := range all {
		got := s.c.wait(t, frames)
		for i, f := range got {
			if string(f.Data) != strconv.Itoa(i) {
				t.Fatalf("room %d frame %d is %q", s.room, i, f.Data)
			}
		}
	}
	close(stop)
	wg.Wait()
	if n := b.Subscriptions(); n != rooms*subsPerRoom {
		t.Fatalf("%d subscriptions open, want %d", n, rooms*subsPerRoom)
	}
	if b.Dropped() != 0 {
		t.Fatalf("dropped %d", b.Dropped())
	}
}

// BenchmarkRoomBus is the cost of one room frame from publish to the
// subscriber's callback (one subscriber, a 300-byte message frame, as
// ingest publishes them), on each bus. At most 4,096 frames are in flight,
// well inside both buses' pending limits.
func BenchmarkRoomBus(b *testing.B) {
	frame := chat.RoomFrame{Type: "message", User: 1234567890123, Nonce: "4f2c9a7e-0b1d", Data: make([]byte, 300)}
	run := func(b *testing.B, pub, sub chat.RoomBus) {
		var n atomic.Int64
		done := make(chan struct{})
		credits := make(chan struct{}, 4096)
		target := int64(b.N)
		unsub, err := sub.SubscribeRoom(1, func(fs []chat.RoomFrame) {
			for range fs {
				<-credits
			}
			if k := int64(len(fs)); n.Add(k) >= target && n.Load()-k < target { // one drainer at a time
				close(done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer unsub()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sub.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			credits <- struct{}{}
			if err := pub.PublishRoom(1, frame); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	}
	b.Run("local", func(b *testing.B) {
		bus := NewLocalRooms(1<<20, nil)
		run(b, bus, bus)
	})
	b.Run("nats", func(b *testing.B) {
		e := startEmbedded(b, EmbeddedConfig{})
		nc := connect(b, ConnectConfig{Embedded: e, Name: "bench"})
		bus := NewRooms(nc)
		run(b, bus, bus)
	})
}

// Frames that queued while the subscriber was busy come in one call, on
// either bus; a frame with nothing queued behind it is not held back.
func TestRoomBusBatchesABacklog(t *testing.T) {
	roomBuses(t, func(t *testing.T, pub, sub chat.RoomBus) {
		entered, release := make(chan struct{}), make(chan struct{})
		c := newCollector()
		var once sync.Once
		var calls []int // appended before c.add, read after c.wait
		subscribe(t, sub, 1, func(fs []chat.RoomFrame) {
			once.Do(func() { close(entered); <-release })
			calls = append(calls, len(fs))
			c.add(fs)
		})
		publish := func(from, to int) {
			for i := from; i < to; i++ {
				if err := pub.PublishRoom(1, chat.RoomFrame{Type: "message", Data: []byte(strconv.Itoa(i))}); err != nil {
					t.Fatal(err)
				}
			}
		}
		flush := func(b chat.RoomBus) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		publish(0, 1)
		<-entered
		publish(1, 11)
		// Over NATS: the server has them once the publisher's round trip
		// is done, and the subscriber's client once its own is.
		flush(pub)
		flush(sub)
		close(release)
		got := c.wait(t, 11)
		for i, f := range got {
			if string(f.Data) != strconv.Itoa(i) {
				t.Fatalf("frame %d is %q", i, f.Data)
			}
		}
		publish(11, 12)
		c.wait(t, 12)
		if want := "[1 10 1]"; fmt.Sprint(calls) != want {
			t.Fatalf("frames per call %v, want %s", calls, want)
		}
	})
}
