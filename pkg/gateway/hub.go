package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// room is one NATS room subscription shared by every local connection in
// the room. Lock order: Gateway.mu before room.mu. The NATS callback takes
// only room.mu, so fanout in one room never waits for joins elsewhere.
type room struct {
	id    chat.ID
	unsub func()

	mu      sync.Mutex
	gone    bool // unsubscribed; late callbacks must do nothing
	members map[*conn]*member
}

// member is one connection's state in one room (guarded by room.mu).
type member struct {
	// joining is set while a join fetches messages: live frames are held
	// so they can follow the joined frame, not precede it.
	joining bool
	held    []heldFrame
	// floor is the newest message ID the client already has from a
	// joined frame (or its since). A live copy of such a message, which
	// can arrive after joined when ingest publishes after storing, is
	// dropped so the client never sees it twice.
	floor chat.ID
}

type heldFrame struct {
	data []byte  // framed (wsText)
	id   chat.ID // message ID, 0 for other frames
}

// joinLocked adds c to room id, subscribing the process to the room if it
// is the first local member. It reports the member and whether it existed.
// Caller holds g.mu.
func (g *Gateway) joinLocked(c *conn, id chat.ID) (*room, *member, bool, error) {
	r := g.rooms[id]
	if r == nil {
		r = &room{id: id, members: make(map[*conn]*member)}
		unsub, err := g.bus.SubscribeRoom(id, func(f chat.RoomFrame) { g.onRoomMsg(r, f) })
		if err != nil {
			return nil, nil, false, err
		}
		r.unsub = unsub
		g.rooms[id] = r
		g.stats.rooms.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.members[c]
	existed := m != nil
	if !existed {
		m = &member{}
		r.members[c] = m
		c.rooms = append(c.rooms, r)
	}
	m.joining = true
	m.held = nil
	return r, m, existed, nil
}

// leaveLocked removes c from r and drops the subscription when r has no
// local member left. Caller holds g.mu.
func (g *Gateway) leaveLocked(c *conn, r *room) {
	r.mu.Lock()
	delete(r.members, c)
	empty := len(r.members) == 0
	r.mu.Unlock()
	c.dropRoom(r.id)
	if empty {
		g.dropRoomLocked(r)
	}
}

// dropRoomLocked unsubscribes from r. Caller holds g.mu.
func (g *Gateway) dropRoomLocked(r *room) {
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return
	}
	r.gone = true
	r.mu.Unlock()
	if g.rooms[r.id] == r {
		delete(g.rooms, r.id)
	}
	g.stats.rooms.Add(-1)
	r.unsub()
}

// onRoomMsg forwards one room frame to every local member. It never
// blocks: enqueue drops (and closes) a connection that cannot keep up.
func (g *Gateway) onRoomMsg(r *room, f chat.RoomFrame) {
	typ, sender := f.Type, f.User
	var from chat.ID // typing frames are not echoed to their sender
	if typ == typeTyping {
		from = sender
	}
	var nonce string // a message frame may wait for its sender's ack
	if typ == typeMessage {
		nonce = f.Nonce
	}
	data := f.Data
	frame := wsText(data) // framed once for every member
	// The message ID is parsed at most once per frame, and only if a
	// member needs it for dedupe.
	var id chat.ID
	parsed := typ != typeMessage
	msgID := func() chat.ID {
		if !parsed {
			parsed = true
			id = frameMessageID(data)
		}
		return id
	}

	var n int64
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return
	}
	for c, mem := range r.members {
		if from != 0 && c.caller.User.ID == from {
			continue // no echo of one's own typing
		}
		if mem.joining {
			if len(mem.held) >= g.cfg.SendQueue {
				c.slow()
				continue
			}
			mem.held = append(mem.held, heldFrame{data: frame, id: msgID()})
			continue
		}
		if mem.floor != 0 && typ == typeMessage {
			if mid := msgID(); mid != 0 && mid <= mem.floor {
				continue
			}
		}
		if nonce != "" && c.caller.User.ID == sender && c.holdOwnFrame(nonce, frame) {
			n++
			continue
		}
		if c.enqueueFrame(frame) {
			n++
		}
	}
	r.mu.Unlock()
	g.stats.deliveries.Add(n)
}

// frameMessageID returns the message ID of a message frame, 0 if it has none.
func frameMessageID(b []byte) chat.ID {
	if id, ok := fastMessageID(b); ok {
		return id
	}
	var f struct {
		Message struct {
			ID chat.ID `json:"id"`
		} `json:"message"`
	}
	if json.Unmarshal(b, &f) != nil {
		return 0
	}
	return f.Message.ID
}

// fastMessageID reads the ID of a frame laid out as chat.Message encodes
// it, `..."message":{"id":"123",...`, without decoding the whole frame.
// Any other layout falls back to a full decode.
func fastMessageID(b []byte) (chat.ID, bool) {
	const key = `"message":{"id":"`
	i := bytes.Index(b, []byte(key))
	// Only trust it if it is the outer object's field: nothing before it
	// but the type, so a body containing the key cannot fool us.
	if i < 0 || i > 32 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 || j > 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return chat.ID(n), true
}

// onControl applies a control event to local connections.
func (g *Gateway) onControl(m *nats.Msg) {
	var ev chat.ControlEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		g.log.Warn("bad control event", "err", err)
		return
	}
	switch ev.Type {
	case chat.EventRoomDeleted:
		g.evictRoom(ev.RoomID, 0, roomFrame(typeRoomDeleted, ev.RoomID))
	case chat.EventMemberRemoved:
		if ev.UserID != 0 {
			g.evictRoom(ev.RoomID, ev.UserID, roomFrame(typeRemoved, ev.RoomID))
		}
	case chat.EventSessionRevoked:
		if ev.TokenHash == "" {
			return
		}
		g.mu.Lock()
		for c := range g.bySession[ev.TokenHash] {
			c.kill(websocket.StatusPolicyViolation, "session revoked", true)
		}
		g.mu.Unlock()
	}
}

// evictRoom tells local members of room id (only those of user, if set)
// with frame, and takes them out of the room.
func (g *Gateway) evictRoom(id, user chat.ID, frame []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rooms[id]
	if r == nil {
		return
	}
	// The frame is queued and the member removed under one room lock, so
	// no live frame of the room can follow it.
	r.mu.Lock()
	var out []*conn
	for c := range r.members {
		if user == 0 || c.caller.User.ID == user {
			c.enqueue(frame)
			delete(r.members, c)
			out = append(out, c)
		}
	}
	empty := len(r.members) == 0
	r.mu.Unlock()
	for _, c := range out {
		c.dropRoom(id)
	}
	if empty {
		g.dropRoomLocked(r)
	}
}
