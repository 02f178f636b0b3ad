package room

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/natsbus"
)

// fakeRooms is a RoomService with rooms and members in memory; it counts
// lookups and can hold one until released.
type fakeRooms struct {
	chat.RoomService
	mu      sync.Mutex
	rooms   map[chat.ID]chat.Room
	members map[[2]chat.ID]bool
	lookups atomic.Int64
	hold    chan struct{} // non-nil: Room waits for it to close
	entered chan struct{}
}

func newFakeRooms() *fakeRooms {
	return &fakeRooms{rooms: map[chat.ID]chat.Room{}, members: map[[2]chat.ID]bool{}}
}

func (f *fakeRooms) Room(ctx context.Context, caller, id chat.ID) (chat.Room, error) {
	f.lookups.Add(1)
	f.mu.Lock()
	hold, entered := f.hold, f.entered
	r, ok := f.rooms[id]
	member := f.members[[2]chat.ID{id, caller}]
	f.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	if !ok || (r.Private && r.OwnerID != caller && !member) {
		return chat.Room{}, chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	return r, nil
}

func (f *fakeRooms) DeleteRoom(ctx context.Context, caller, id chat.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rooms, id)
	return nil
}

func (f *fakeRooms) RemoveMember(ctx context.Context, caller, id, user chat.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.members, [2]chat.ID{id, user})
	return nil
}

func (f *fakeRooms) add(r chat.Room, members ...chat.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rooms[r.ID] = r
	for _, m := range members {
		f.members[[2]chat.ID{r.ID, m}] = true
	}
}

// drop changes the backing data without telling the cache, as another
// node's change whose event has not arrived yet would.
func (f *fakeRooms) drop(room, user chat.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if user == 0 {
		delete(f.rooms, room)
		return
	}
	delete(f.members, [2]chat.ID{room, user})
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustAccess(t *testing.T, c *AccessCache, user, room chat.ID) {
	t.Helper()
	if err := c.CheckAccess(context.Background(), user, room); err != nil {
		t.Fatalf("user %v room %v: %v", user, room, err)
	}
}

func mustDeny(t *testing.T, c *AccessCache, user, room chat.ID) {
	t.Helper()
	if err := c.CheckAccess(context.Background(), user, room); chat.ErrorCode(err) != chat.ENOTFOUND {
		t.Fatalf("user %v room %v: got %v, want not_found", user, room, err)
	}
}

func TestAccessCacheGrants(t *testing.T) {
	f := newFakeRooms()
	f.add(chat.Room{ID: 1, OwnerID: 10})                    // public
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 11) // private, 11 a member
	c := NewAccessCache(f, nil, time.Hour, quiet())

	// A public room: one lookup serves every user.
	for u := chat.ID(20); u < 30; u++ {
		mustAccess(t, c, u, 1)
	}
	if n := f.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for a public room, want 1", n)
	}
	// A private room: per member, and the owner.
	mustAccess(t, c, 11, 2)
	mustAccess(t, c, 11, 2)
	mustAccess(t, c, 10, 2) // the owner is known from the room's entry
	if n := f.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2", n)
	}
	// Refusals are not cached: a member added later gets in at once.
	mustDeny(t, c, 12, 2)
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 12)
	mustAccess(t, c, 12, 2)
	mustDeny(t, c, 11, 3) // no such room
	f.add(chat.Room{ID: 3, OwnerID: 10})
	mustAccess(t, c, 11, 3)
}

func TestAccessCacheEvictsOnLocalChange(t *testing.T) {
	f := newFakeRooms()
	f.add(chat.Room{ID: 1, OwnerID: 10})
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 11, 12)
	c := NewAccessCache(f, nil, time.Hour, quiet())
	mustAccess(t, c, 11, 1)
	mustAccess(t, c, 11, 2)
	mustAccess(t, c, 12, 2)

	if err := c.RemoveMember(context.Background(), 10, 2, 11); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, c, 11, 2)
	mustAccess(t, c, 12, 2) // the other member keeps access
	if err := c.DeleteRoom(context.Background(), 10, 1); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, c, 11, 1)
	if err := c.DeleteRoom(context.Background(), 10, 2); err != nil {
		t.Fatal(err)
	}
	mustDeny(t, c, 12, 2)
	mustDeny(t, c, 10, 2)
}

// A grant read before an eviction and stored after it would undo the
// eviction; the cache must drop it.
func TestAccessCacheLookupRacingEviction(t *testing.T) {
	f := newFakeRooms()
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 11)
	c := NewAccessCache(f, nil, time.Hour, quiet())
	f.mu.Lock()
	f.hold, f.entered = make(chan struct{}), make(chan struct{}, 1)
	f.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- c.CheckAccess(context.Background(), 11, 2) }()
	<-f.entered // the lookup has read "member"
	if err := c.RemoveMember(context.Background(), 10, 2, 11); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	close(f.hold)
	f.hold = nil
	f.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatalf("the racing check itself: %v", err) // it began before the removal
	}
	mustDeny(t, c, 11, 2)
}

func TestAccessCacheTTL(t *testing.T) {
	f := newFakeRooms()
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 11)
	c := NewAccessCache(f, nil, 20*time.Millisecond, quiet())
	mustAccess(t, c, 11, 2)
	f.drop(2, 11) // a change whose event is lost
	deadline := time.Now().Add(30 * time.Second)
	for c.CheckAccess(context.Background(), 11, 2) == nil {
		if time.Now().After(deadline) {
			t.Fatal("grant outlived its TTL")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAccessCacheBounded(t *testing.T) {
	f := newFakeRooms()
	for i := chat.ID(1); i <= 50; i++ {
		f.add(chat.Room{ID: i, OwnerID: 10, Private: true}, 100, 101, 102)
	}
	c := NewAccessCache(f, nil, time.Hour, quiet())
	c.max = 40
	for i := chat.ID(1); i <= 50; i++ {
		for u := chat.ID(100); u <= 102; u++ {
			mustAccess(t, c, u, i)
		}
		c.mu.Lock()
		size := c.size
		c.mu.Unlock()
		if size > c.max {
			t.Fatalf("cache holds %d entries, bound %d", size, c.max)
		}
	}
}

// Changes made on another node arrive as control events and evict; junk on
// the control subject changes nothing.
func TestAccessCacheControlEvents(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{StoreDir: t.TempDir()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
	nc, err := natsbus.Connect(context.Background(), natsbus.ConnectConfig{Embedded: e, Name: "test"}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	f := newFakeRooms()
	f.add(chat.Room{ID: 1, OwnerID: 10})
	f.add(chat.Room{ID: 2, OwnerID: 10, Private: true}, 11, 12)
	c := NewAccessCache(f, nc, time.Hour, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Run starts clean once subscribed: grant after that.
	select {
	case <-c.listening:
	case <-time.After(30 * time.Second):
		t.Fatal("the cache never started listening")
	}
	publish := func(b []byte) {
		t.Helper()
		if err := nc.Publish(chat.SubjectControl, b); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	event := func(ev chat.ControlEvent) []byte { b, _ := json.Marshal(ev); return b }
	for _, junk := range [][]byte{
		[]byte("not json"), []byte(`{"type":"room_deleted","room_id":{}}`), []byte(`[]`), nil,
		event(chat.ControlEvent{Type: "something_else", RoomID: 2}),
		event(chat.ControlEvent{Type: chat.EventSessionRevoked, TokenHash: "x"}),
		event(chat.ControlEvent{Type: chat.EventRoomDeleted, RoomID: 999}),
		// Without a user: evicts room 998 whole, the safe side.
		event(chat.ControlEvent{Type: chat.EventMemberRemoved, RoomID: 998}),
	} {
		publish(junk)
	}
	mustAccess(t, c, 11, 2)
	mustAccess(t, c, 12, 2)
	mustAccess(t, c, 11, 1)

	// Another node removes 11 from room 2 and deletes room 1.
	f.drop(2, 11)
	publish(event(chat.ControlEvent{Type: chat.EventMemberRemoved, RoomID: 2, UserID: 11}))
	f.drop(1, 0)
	publish(event(chat.ControlEvent{Type: chat.EventRoomDeleted, RoomID: 1}))
	waitDenied := func(user, room chat.ID) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for c.CheckAccess(context.Background(), user, room) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("user %v still has room %v after the event", user, room)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitDenied(11, 2)
	waitDenied(11, 1)
	before := f.lookups.Load()
	mustAccess(t, c, 12, 2) // untouched by either event
	if f.lookups.Load() != before {
		t.Fatal("an unrelated grant was evicted")
	}
}

func BenchmarkAccessCacheHit(b *testing.B) {
	f := newFakeRooms()
	for i := chat.ID(1); i <= 100; i++ {
		f.add(chat.Room{ID: i, OwnerID: 10, Private: i%2 == 0}, 11)
	}
	c := NewAccessCache(f, nil, time.Hour, quiet())
	ctx := context.Background()
	var i atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.CheckAccess(ctx, 11, chat.ID(1+i.Add(1)%100)); err != nil {
				b.Fatal(fmt.Sprint(err))
			}
		}
	})
}
