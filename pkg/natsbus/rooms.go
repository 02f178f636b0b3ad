package natsbus

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// Rooms is the chat.RoomBus on NATS: a room's frames go to
// chat.RoomSubject(room), the routing fields in headers. It is the bus
// whenever another process may publish or subscribe a room: an external
// NATS, or an embedded server with a client port or a cluster.
type Rooms struct{ nc *nats.Conn }

var _ chat.RoomBus = (*Rooms)(nil)

// NewRooms returns the room bus on nc.
func NewRooms(nc *nats.Conn) *Rooms { return &Rooms{nc: nc} }

// PublishRoom publishes f on the room's subject.
func (b *Rooms) PublishRoom(room chat.ID, f chat.RoomFrame) error {
	// The header names are in canonical form already, so the map is
	// built directly rather than through Header.Set.
	hdr := nats.Header{chat.HeaderType: {f.Type}, chat.HeaderUser: {strconv.FormatInt(int64(f.User), 10)}}
	if f.Nonce != "" {
		hdr[chat.HeaderNonce] = []string{f.Nonce}
	}
	return b.nc.PublishMsg(&nats.Msg{Subject: chat.RoomSubject(room), Data: f.Data, Header: hdr})
}

// SubscribeRoom calls fn with every frame published to room from now on.
// A frame with more already queued behind it in the client waits for
// them (up to MaxBatch), so a subscriber that fell behind gets its backlog
// in batches; nothing waits for a frame not yet received.
func (b *Rooms) SubscribeRoom(room chat.ID, fn func([]chat.RoomFrame)) (func(), error) {
	var batch []chat.RoomFrame // nats.go calls the handler from one goroutine
	sub, err := b.nc.Subscribe(chat.RoomSubject(room), func(m *nats.Msg) {
		uid, _ := strconv.ParseInt(m.Header.Get(chat.HeaderUser), 10, 64)
		f := chat.RoomFrame{Type: m.Header.Get(chat.HeaderType), User: chat.ID(uid), Data: m.Data}
		if f.Type == "message" {
			f.Nonce = m.Header.Get(chat.HeaderNonce)
		}
		batch = append(batch, f)
		if len(batch) < MaxBatch {
			// Pending counts this message until the handler returns,
			// and those queued behind it.
			if n, _, err := m.Sub.Pending(); err == nil && n > 1 {
				return
			}
		}
		fn(batch)
		clear(batch)
		batch = batch[:0]
	})
	if err != nil {
		return nil, err
	}
	// Unsubscribe fails only once the connection is closed, and then the
	// subscription is gone with it.
	return func() { _ = sub.Unsubscribe() }, nil
}

// Sync waits for the server to have every subscription made before.
func (b *Rooms) Sync(ctx context.Context) error { return b.nc.FlushWithContext(ctx) }

// LocalRooms is the chat.RoomBus of a process whose embedded NATS server
// takes no other client (no client port, no cluster): no other process can
// publish or subscribe a room, so frames go from publisher to subscriber in
// memory. That skips, per frame, the headers' encoding, the server's
// parsing and routing, two trips through the in-process pipe and the
// headers' decoding: about a tenth of the CPU of a send at saturation.
//
// Like a NATS subscription, each subscriber has a queue of pending frames,
// drained in order by one goroutine at a time (started when frames arrive,
// gone when the queue is empty, so an idle room costs none). A subscriber
// that falls a whole queue behind loses frames, as a slow NATS subscription
// does; the gateway's callback never blocks, so that means a stalled
// process, not a slow client.
type LocalRooms struct {
	limit   int
	log     *slog.Logger
	dropped atomic.Int64

	mu   sync.RWMutex
	subs map[chat.ID][]*localSub // replaced, never modified in place
}

var _ chat.RoomBus = (*LocalRooms)(nil)

// DefaultLocalPending is LocalRooms' queue bound per subscription, in
// frames.
const DefaultLocalPending = 65536

// MaxBatch is the most frames either bus hands a subscriber in one call.
// Frames queue only while the subscriber is busy with earlier ones, so a
// batch of more than one means the process is behind; the gateway then
// writes the whole batch to each member at once, one write instead of one
// per frame.
const MaxBatch = 64

// NewLocalRooms returns an in-memory room bus; pending bounds each
// subscription's queue (0: DefaultLocalPending).
func NewLocalRooms(pending int, log *slog.Logger) *LocalRooms {
	if pending <= 0 {
		pending = DefaultLocalPending
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LocalRooms{limit: pending, log: log, subs: make(map[chat.ID][]*localSub)}
}

// Subscriptions returns how many subscriptions are open.
func (b *LocalRooms) Subscriptions() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, s := range b.subs {
		n += len(s)
	}
	return n
}

// Dropped returns how many frames subscribers lost to a full queue.
func (b *LocalRooms) Dropped() int64 { return b.dropped.Load() }

// PublishRoom queues f for every subscriber of room. It never blocks.
func (b *LocalRooms) PublishRoom(room chat.ID, f chat.RoomFrame) error {
	b.mu.RLock()
	subs := b.subs[room]
	b.mu.RUnlock()
	for _, s := range subs {
		s.push(f)
	}
	return nil
}

// Sync returns at once: a local subscription is in effect when made.
func (b *LocalRooms) Sync(context.Context) error { return nil }

// SubscribeRoom calls fn with every frame published to room from now on:
// all that queued while fn was busy, up to MaxBatch per call.
func (b *LocalRooms) SubscribeRoom(room chat.ID, fn func([]chat.RoomFrame)) (func(), error) {
	s := &localSub{bus: b, room: room, fn: fn}
	b.mu.Lock()
	b.subs[room] = append(slices.Clip(b.subs[room]), s)
	b.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { b.unsubscribe(s) }) }, nil
}

func (b *LocalRooms) unsubscribe(s *localSub) {
	b.mu.Lock()
	subs := slices.DeleteFunc(slices.Clone(b.subs[s.room]), func(x *localSub) bool { return x == s })
	if len(subs) == 0 {
		delete(b.subs, s.room)
	} else {
		b.subs[s.room] = subs
	}
	b.mu.Unlock()
	s.mu.Lock()
	s.closed.Store(true)
	s.q = nil
	s.mu.Unlock()
}

type localSub struct {
	bus  *LocalRooms
	room chat.ID
	fn   func([]chat.RoomFrame)

	mu       sync.Mutex
	q        []chat.RoomFrame
	spare    []chat.RoomFrame // the last drained batch's array, reused
	running  bool             // a goroutine is draining q
	closed   atomic.Bool      // unsubscribed: no frame is handed to fn after
	dropping bool             // the last frame was dropped (logs once per episode)
}

func (s *localSub) push(f chat.RoomFrame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return
	}
	if len(s.q) >= s.bus.limit {
		s.bus.dropped.Add(1)
		if !s.dropping {
			s.dropping = true
			s.bus.log.Error("room subscriber fell a whole queue behind; dropping frames", "room_id", s.room, "pending", len(s.q))
		}
		return
	}
	s.dropping = false
	s.q = append(s.q, f)
	if !s.running {
		s.running = true
		go s.drain()
	}
}

// drain hands queued frames to fn in order, MaxBatch at a time at most,
// until the queue is empty.
func (s *localSub) drain() {
	s.mu.Lock()
	for len(s.q) > 0 && !s.closed.Load() {
		batch := s.q
		s.q, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		for i := 0; i < len(batch); i += MaxBatch {
			part := batch[i:min(i+MaxBatch, len(batch))]
			if !s.closed.Load() {
				s.fn(part)
			}
			clear(part) // let the frames' bytes go
		}
		s.mu.Lock()
		s.spare = batch[:0]
	}
	s.running = false
	s.mu.Unlock()
}
