package room

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// AccessCache wraps a RoomService (local or a gRPC client) with an
// in-process cache of granted access, so a send does not cost a database
// (or network) round trip for the access check.
//
// Only grants are cached: a refusal is asked again every time, so a new
// member or a new room is usable at once. What takes access away — a
// room's deletion and a member's removal — evicts at once on this node when
// it goes through this cache, and on every node when the room role's
// control event arrives on chat.SubjectControl. TTL bounds how long a grant
// is trusted should an event be lost (a NATS reconnect).
type AccessCache struct {
	chat.RoomService
	ttl time.Duration
	max int
	nc  *nats.Conn
	log *slog.Logger

	mu    sync.Mutex
	rooms map[chat.ID]*roomAccess
	size  int // entries in rooms and their members together
	// epoch changes at every eviction. A lookup that started before an
	// eviction must not store what it read: it may predate the change.
	epoch uint64

	listening chan struct{} // closed once Run receives every event
}

type roomAccess struct {
	private bool
	owner   chat.ID
	until   time.Time             // for a public room: anyone may post
	members map[chat.ID]time.Time // private room: members seen, until
}

// DefaultAccessTTL is how long a grant is trusted without asking again.
const DefaultAccessTTL = time.Minute

const defaultMaxAccessEntries = 200_000

// NewAccessCache returns the cache over rooms. nc (may be nil: this node's
// own changes only) carries the control events; ttl <= 0 takes
// DefaultAccessTTL.
func NewAccessCache(rooms chat.RoomService, nc *nats.Conn, ttl time.Duration, log *slog.Logger) *AccessCache {
	if ttl <= 0 {
		ttl = DefaultAccessTTL
	}
	return &AccessCache{RoomService: rooms, ttl: ttl, max: defaultMaxAccessEntries, nc: nc, log: log,
		rooms: map[chat.ID]*roomAccess{}, listening: make(chan struct{})}
}

// CheckAccess answers from the cache when it holds a grant.
func (c *AccessCache) CheckAccess(ctx context.Context, userID, roomID chat.ID) error {
	now := time.Now()
	c.mu.Lock()
	ok := c.grantedLocked(userID, roomID, now)
	epoch := c.epoch
	c.mu.Unlock()
	if ok {
		return nil
	}
	// Room (not CheckAccess) says whether the room is public, so one
	// lookup grants every user of a public room.
	r, err := c.RoomService.Room(ctx, userID, roomID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.storeLocked(userID, r, now.Add(c.ttl))
	}
	c.mu.Unlock()
	return nil
}

func (c *AccessCache) grantedLocked(userID, roomID chat.ID, now time.Time) bool {
	ra := c.rooms[roomID]
	if ra == nil || !now.Before(ra.until) {
		return false
	}
	if !ra.private || ra.owner == userID {
		return true
	}
	until, ok := ra.members[userID]
	return ok && now.Before(until)
}

func (c *AccessCache) storeLocked(userID chat.ID, r chat.Room, until time.Time) {
	if c.size >= c.max {
		// Crude but bounded: a full cache starts over rather than grow.
		c.rooms = map[chat.ID]*roomAccess{}
		c.size = 0
	}
	ra := c.rooms[r.ID]
	if ra == nil || ra.private != r.Private || ra.owner != r.OwnerID {
		ra = &roomAccess{private: r.Private, owner: r.OwnerID}
		if old := c.rooms[r.ID]; old != nil {
			c.size -= 1 + len(old.members)
		}
		c.rooms[r.ID] = ra
		c.size++
	}
	if !r.Private || r.OwnerID == userID {
		ra.until = until
		return
	}
	// A private room's entry lives as long as its newest member grant.
	if until.After(ra.until) {
		ra.until = until
	}
	if ra.members == nil {
		ra.members = map[chat.ID]time.Time{}
	}
	if _, ok := ra.members[userID]; !ok {
		c.size++
	}
	ra.members[userID] = until
}

// reset forgets every grant.
func (c *AccessCache) reset() {
	c.mu.Lock()
	c.epoch++
	c.rooms = map[chat.ID]*roomAccess{}
	c.size = 0
	c.mu.Unlock()
}

// evict forgets userID's grant to a private room, or with userID 0 the
// whole room.
func (c *AccessCache) evict(roomID, userID chat.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	ra := c.rooms[roomID]
	if ra == nil {
		return
	}
	if userID == 0 {
		c.size -= 1 + len(ra.members)
		delete(c.rooms, roomID)
		return
	}
	if _, ok := ra.members[userID]; ok {
		delete(ra.members, userID)
		c.size--
	}
}

// DeleteRoom deletes through the room role and evicts locally, so this node
// refuses the room at once, before the control event arrives.
func (c *AccessCache) DeleteRoom(ctx context.Context, caller, roomID chat.ID) error {
	err := c.RoomService.DeleteRoom(ctx, caller, roomID)
	// Evict whatever the outcome: a failure may have been after the
	// change (a lost reply), and a miss costs only a lookup.
	c.evict(roomID, 0)
	return err
}

// RemoveMember removes through the room role and evicts locally.
func (c *AccessCache) RemoveMember(ctx context.Context, caller, roomID, userID chat.ID) error {
	err := c.RoomService.RemoveMember(ctx, caller, roomID, userID)
	c.evict(roomID, userID)
	return err
}

// Run listens for room deletions and member removals until ctx ends.
func (c *AccessCache) Run(ctx context.Context) error {
	if c.nc == nil {
		<-ctx.Done()
		return nil
	}
	sub, err := c.nc.Subscribe(chat.SubjectControl, func(m *nats.Msg) {
		var e chat.ControlEvent
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		switch e.Type {
		case chat.EventRoomDeleted:
			c.evict(e.RoomID, 0)
		case chat.EventMemberRemoved:
			c.evict(e.RoomID, e.UserID)
		}
	})
	if err != nil {
		return err
	}
	// Grants cached before the subscription was known to the server could
	// miss an event sent in between: start clean once it is.
	if err := c.nc.Flush(); err == nil {
		c.reset()
	}
	close(c.listening)
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}
