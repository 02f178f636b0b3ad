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
		unsub, err := g.bus.SubscribeRoom(id, func(fs []chat.RoomFrame) { g.onRoomFrames(r, fs) })
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

// fanFrame is one room frame as fanout needs it: framed once for every
// member, its message ID parsed at most once, and only if a member needs it
// for dedupe.
type fanFrame struct {
	typ    string
	sender chat.ID
	from   chat.ID // typing frames are not echoed to their sender
	nonce  string  // a message frame may wait for its sender's ack
	data   []byte
	frame  []byte
	id     chat.ID
	parsed bool
}

func newFanFrame(f chat.RoomFrame) fanFrame {
	rf := fanFrame{typ: f.Type, sender: f.User, data: f.Data, frame: wsText(f.Data), parsed: f.Type != typeMessage}
	switch f.Type {
	case typeTyping:
		rf.from = f.User
	case typeMessage:
		rf.nonce = f.Nonce
	}
	return rf
}

func (f *fanFrame) msgID() chat.ID {
	if !f.parsed {
		f.parsed = true
		f.id = frameMessageID(f.data)
	}
	return f.id
}

// onRoomFrames forwards room frames, in order, to every local member. It
// never blocks: enqueue drops (and closes) a connection that cannot keep
// up. Several frames come at once only when they queued while this room's
// earlier frames were being written, i.e. when the process is behind; each
// member then gets all of its frames in one write instead of one write
// each, so a saturated gateway makes fewer system calls the further behind
// it falls.
func (g *Gateway) onRoomFrames(r *room, in []chat.RoomFrame) {
	if len(in) == 1 {
		g.onRoomFrame(r, newFanFrame(in[0]))
		return
	}
	fs := make([]fanFrame, len(in))
	for i := range in {
		fs[i] = newFanFrame(in[i])
	}
	var n int64
	var out [][]byte // one member's frames, reused
	var all []byte   // every frame of the batch, joined once for the members that get them all
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return
	}
	for c, mem := range r.members {
		out = out[:0]
		for i := range fs {
			f := &fs[i]
			switch g.deliver(c, mem, f) {
			case deliverNow:
				out = append(out, f.frame)
			case deliverOwn:
				// Its ack may go with it: what came before goes first.
				if c.enqueueFrames(out) {
					n += int64(len(out))
				}
				out = out[:0]
				if c.holdOwnFrame(f.nonce, f.frame) {
					n++
				} else if c.enqueueFrame(f.frame) {
					n++
				}
			}
		}
		if len(out) == len(fs) {
			// The usual case: the member gets the whole batch, so it
			// shares one buffer with the others that do.
			if all == nil {
				all = bytes.Join(out, nil)
			}
			if c.enqueueFrame(all) {
				c.g.stats.framesOut.Add(int64(len(out) - 1))
				n += int64(len(out))
			}
		} else if c.enqueueFrames(out) {
			n += int64(len(out))
		}
	}
	r.mu.Unlock()
	clear(out)
	g.stats.deliveries.Add(n)
}

// onRoomFrame forwards one room frame to every local member.
func (g *Gateway) onRoomFrame(r *room, f fanFrame) {
	var n int64
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return
	}
	for c, mem := range r.members {
		switch g.deliver(c, mem, &f) {
		case deliverNow:
			if c.enqueueFrame(f.frame) {
				n++
			}
		case deliverOwn:
			if c.holdOwnFrame(f.nonce, f.frame) {
				n++
			} else if c.enqueueFrame(f.frame) {
				n++
			}
		}
	}
	r.mu.Unlock()
	g.stats.deliveries.Add(n)
}

type delivery int

const (
	deliverNone delivery = iota // not for this member, or held for its join
	deliverNow                  // write it
	deliverOwn                  // the member's own message: its ack may be waiting for it
)

// deliver decides what one member gets of f. A member still joining holds
// the frame (or is dropped as slow when it holds too many). Caller holds
// r.mu.
func (g *Gateway) deliver(c *conn, mem *member, f *fanFrame) delivery {
	if f.from != 0 && c.caller.User.ID == f.from {
		return deliverNone // no echo of one's own typing
	}
	if mem.joining {
		if len(mem.held) >= g.cfg.SendQueue {
			c.slow()
			return deliverNone
		}
		mem.held = append(mem.held, heldFrame{data: f.frame, id: f.msgID()})
		return deliverNone
	}
	if mem.floor != 0 && f.typ == typeMessage {
		if mid := f.msgID(); mid != 0 && mid <= mem.floor {
			return deliverNone
		}
	}
	if f.nonce != "" && c.caller.User.ID == f.sender {
		return deliverOwn
	}
	return deliverNow
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
