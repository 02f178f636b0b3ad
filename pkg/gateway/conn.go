package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// opsQueue is how many parsed requests may wait for a connection's worker.
// When it is full the reader stops reading, which pushes back on the client
// through TCP instead of buffering without bound.
const opsQueue = 32

// conn is one WebSocket connection.
type conn struct {
	g      *Gateway
	id     uint64
	caller chat.Caller
	log    *slog.Logger
	ws     *websocket.Conn

	out chan []byte  // frames for the writer; never closed
	ops chan request // requests for the worker

	// ctx ends when the connection is being closed (kill). The socket's
	// own reads and writes do not use it: cancelling a coder/websocket
	// operation's context tears the TCP connection down at once, and the
	// writer still needs the socket to send the close frame.
	ctx    context.Context
	cancel context.CancelFunc
	dead   atomic.Bool
	// Set once by kill; read by the writer once ctx is done.
	closeMu     sync.Mutex
	closeCode   websocket.StatusCode
	closeReason string
	drain       bool

	rooms map[chat.ID]*room // guarded by g.mu

	typingAt map[chat.ID]time.Time // worker goroutine only

	// inflight is the nonce of the send being posted, and held the room
	// frames of that message that arrived before its ack: API.md promises
	// the sender its ack first, then the message, but the ingest reply and
	// the room fanout reach this process on different NATS callbacks.
	sendMu   sync.Mutex
	inflight string
	held     [][]byte
}

// holdOwnFrame keeps a frame of the message this connection is sending
// until its ack is queued; it reports whether it did.
func (c *conn) holdOwnFrame(nonce string, data []byte) bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if nonce == "" || nonce != c.inflight {
		return false
	}
	c.held = append(c.held, data)
	return true
}

func newConn(g *Gateway, caller chat.Caller) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	id := g.nextID.Add(1)
	return &conn{
		g:        g,
		id:       id,
		caller:   caller,
		log:      g.log.With("conn_id", id, "user_id", caller.User.ID),
		out:      make(chan []byte, g.cfg.SendQueue),
		ops:      make(chan request, opsQueue),
		ctx:      ctx,
		cancel:   cancel,
		rooms:    make(map[chat.ID]*room),
		typingAt: make(map[chat.ID]time.Time),
	}
}

// kill starts closing the connection with code and reason; drain says
// whether frames already queued are written first. Only the first call
// counts; it reports whether it was this one. It never blocks, so it is
// safe under any lock and from NATS callbacks.
func (c *conn) kill(code websocket.StatusCode, reason string, drain bool) bool {
	if c.dead.Swap(true) {
		return false
	}
	c.closeMu.Lock()
	c.closeCode, c.closeReason, c.drain = code, reason, drain
	c.closeMu.Unlock()
	c.cancel()
	return true
}

// closeStatus returns what kill recorded.
func (c *conn) closeStatus() (websocket.StatusCode, string, bool) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closeCode, c.closeReason, c.drain
}

// enqueue hands a frame to the writer without blocking. A full queue
// means the client reads slower than its rooms talk: it is dropped.
func (c *conn) enqueue(b []byte) bool {
	if c.dead.Load() {
		return false
	}
	select {
	case c.out <- b:
		return true
	default:
		c.slow()
		return false
	}
}

// slow closes a connection that cannot keep up, dropping its queue.
func (c *conn) slow() {
	if c.kill(websocket.StatusTryAgainLater, "slow consumer", false) {
		c.g.stats.slow.Add(1)
		c.log.Info("slow consumer disconnected", "queue", len(c.out))
	}
}

// run serves the connection until it is closed: the calling goroutine
// reads, three more write, work and ping.
func (c *conn) run(ws *websocket.Conn, joinRoom chat.ID) {
	c.ws = ws
	if exp := c.caller.ExpiresAt; !exp.IsZero() {
		t := time.AfterFunc(time.Until(exp), func() {
			c.kill(websocket.StatusPolicyViolation, "session expired", true)
		})
		defer t.Stop()
	}
	if joinRoom != 0 {
		c.ops <- request{Type: typeJoin, RoomID: joinRoom} // ops is empty here
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.writeLoop() }()
	go func() { defer wg.Done(); c.workLoop() }()
	go func() { defer wg.Done(); c.pingLoop() }()
	c.readLoop()
	wg.Wait()
}

func (c *conn) readLoop() {
	// However reading ends, the rest of the connection follows.
	defer c.kill(websocket.StatusNormalClosure, "", false)
	g := c.g
	bad := 0
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err != nil {
			if st := websocket.CloseStatus(err); st == -1 && !c.dead.Load() {
				c.log.Debug("read ended", "err", err)
			}
			return
		}
		g.stats.framesIn.Add(1)
		req, perr := parseRequest(typ, b)
		if perr != nil {
			g.stats.badFrames.Add(1)
			if bad++; bad > g.cfg.MaxBadFrames {
				c.kill(websocket.StatusPolicyViolation, "too many invalid frames", true)
				return
			}
			var nonce *string
			if req.Type == typeSend {
				nonce = &req.Nonce
			}
			c.enqueue(errFrame(perr, req.RoomID, nonce))
			continue
		}
		bad = 0
		if req.Type == typePing {
			// Answered here, not by the worker, so a keepalive is never
			// stuck behind a slow send.
			c.enqueue(pongFrame)
			continue
		}
		select {
		case c.ops <- req:
		case <-c.ctx.Done():
			return
		}
	}
}

// writeLoop writes queued frames in order, back to back. It cannot put
// several frames under one flush: coder/websocket (v1.8.15) flushes its
// buffer at the end of every message, for Write and Writer alike, so each
// frame costs a write system call. Batching would need a corking net.Conn
// beneath the library.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.ctx.Done():
			c.closeSocket(nil)
			return
		case b := <-c.out:
			if c.ctx.Err() != nil {
				c.closeSocket(b)
				return
			}
			if !c.write(b) {
				return
			}
		}
	}
}

func (c *conn) write(b []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.WriteTimeout)
	err := c.ws.Write(ctx, websocket.MessageText, b)
	cancel()
	if err != nil {
		c.kill(websocket.StatusInternalError, "write failed", false)
		_ = c.ws.CloseNow()
		return false
	}
	c.g.stats.framesOut.Add(1)
	return true
}

// closeSocket writes pending and what is still queued if the close asked
// for it, then runs the close handshake.
func (c *conn) closeSocket(pending []byte) {
	code, reason, drain := c.closeStatus()
	if drain {
		if pending != nil && !c.write(pending) {
			return
		}
	drain:
		for {
			select {
			case b := <-c.out:
				if !c.write(b) {
					return
				}
			default:
				break drain
			}
		}
	}
	_ = c.ws.Close(code, reason)
}

func (c *conn) pingLoop() {
	t := time.NewTicker(c.g.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.PongTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			// A peer that does not answer pings will not answer a close
			// handshake either.
			c.kill(websocket.StatusPolicyViolation, "pong timeout", false)
			_ = c.ws.CloseNow()
			return
		}
	}
}

func (c *conn) workLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case req := <-c.ops:
			switch req.Type {
			case typeJoin:
				c.join(req)
			case typeLeave:
				c.leave(req.RoomID)
			case typeSend:
				c.send(req)
			case typeTyping:
				c.typing(req.RoomID)
			}
		}
	}
}

// join subscribes to the room first and fetches second, holding live
// frames meanwhile, so the client gets joined followed by every later
// message exactly once.
func (c *conn) join(req request) {
	g := c.g
	uid := c.caller.User.ID
	g.mu.Lock()
	if _, ok := c.rooms[req.RoomID]; !ok && len(c.rooms) >= g.cfg.MaxRoomsPerConn {
		g.mu.Unlock()
		c.enqueue(errFrame(chat.Errorf(chat.EINVALID, "joined too many rooms"), req.RoomID, nil))
		return
	}
	r, m, existed, err := g.joinLocked(c, req.RoomID)
	g.mu.Unlock()
	if err != nil {
		c.log.Error("subscribe room", "room_id", req.RoomID, "err", err)
		c.enqueue(errFrame(chat.Errorf(chat.EUNAVAILABLE, "cannot join now, try again"), req.RoomID, nil))
		return
	}

	ctx, cancel := context.WithTimeout(c.ctx, g.cfg.RequestTimeout)
	defer cancel()
	// Subscribe only queues the SUB; the flush round trip guarantees the
	// server has it before we read the store, so no message can fall
	// between the snapshot and the live stream.
	if ferr := g.deps.NC.FlushWithContext(ctx); ferr != nil && c.ctx.Err() == nil {
		c.log.Warn("flush room subscription", "room_id", req.RoomID, "err", ferr)
		err = chat.Errorf(chat.EUNAVAILABLE, "cannot join now, try again")
	} else {
		err = ferr
	}
	var msgs []chat.Message
	var truncated bool
	if err == nil {
		if req.Since != 0 {
			msgs, truncated, err = g.deps.Query.Since(ctx, uid, req.RoomID, req.Since, chat.MaxSinceReplay)
		} else {
			msgs, err = g.deps.Query.Latest(ctx, uid, req.RoomID, 0, chat.LatestOnJoin)
		}
	}
	floor := req.Since
	var frame []byte
	if err == nil {
		if msgs == nil {
			msgs = []chat.Message{}
		}
		if n := len(msgs); n > 0 && msgs[n-1].ID > floor {
			floor = msgs[n-1].ID
		}
		frame = mustJSON(joinedFrame{Type: typeJoined, RoomID: req.RoomID, Messages: msgs, Truncated: truncated})
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	r.mu.Lock()
	if r.gone || r.members[c] != m {
		// Evicted while fetching (room deleted, member removed): the
		// client has been told already.
		r.mu.Unlock()
		return
	}
	if err != nil {
		denied := errors.Is(err, context.Canceled) || isDenied(err)
		if denied || !existed {
			r.mu.Unlock()
			g.leaveLocked(c, r)
		} else {
			// A failed re-join keeps the earlier membership and what
			// arrived meanwhile.
			c.releaseLocked(m)
			r.mu.Unlock()
		}
		if c.ctx.Err() != nil {
			return
		}
		c.enqueue(errFrame(c.clientErr("join", req.RoomID, err), req.RoomID, nil))
		return
	}
	if floor > m.floor {
		m.floor = floor
	}
	c.enqueue(frame)
	c.releaseLocked(m)
	r.mu.Unlock()
	g.stats.joins.Add(1)
}

// releaseLocked ends a join's hold: frames that arrived meanwhile are
// queued, minus messages the client already has. Caller holds room.mu.
func (c *conn) releaseLocked(m *member) {
	var n int64
	for _, h := range m.held {
		if h.id != 0 && h.id <= m.floor {
			continue
		}
		if c.enqueue(h.data) {
			n++
		}
	}
	m.held = nil
	m.joining = false
	c.g.stats.deliveries.Add(n)
}

// clientErr turns the error of a request into what the client may see,
// logging internal ones once, here at the edge. A room one may not access
// is not_found, as if it did not exist; a timeout is unavailable, so the
// client retries (a send with the same nonce is not stored twice).
func (c *conn) clientErr(op string, room chat.ID, err error) error {
	switch {
	case isDenied(err):
		return chat.Errorf(chat.ENOTFOUND, "room not found")
	case errors.Is(err, context.DeadlineExceeded):
		c.log.Warn("request timed out", "op", op, "room_id", room)
		return chat.Errorf(chat.EUNAVAILABLE, "timed out, try again")
	case chat.ErrorCode(err) == chat.EINTERNAL:
		c.log.Error("request failed", "op", op, "room_id", room, "err", err)
	}
	return err
}

func isDenied(err error) bool {
	code := chat.ErrorCode(err)
	return code == chat.ENOTFOUND || code == chat.EFORBIDDEN
}

func (c *conn) leave(id chat.ID) {
	c.g.mu.Lock()
	if r := c.rooms[id]; r != nil {
		c.g.leaveLocked(c, r)
	}
	c.g.mu.Unlock()
	c.enqueue(roomFrame(typeLeft, id))
}

func (c *conn) send(req request) {
	c.sendMu.Lock()
	c.inflight = req.Nonce
	c.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.RequestTimeout)
	msg, err := c.g.deps.Poster.Post(ctx, c.caller, req.RoomID, req.Body, req.Nonce)
	cancel()
	// The answer is queued under sendMu, so no frame of this message can
	// slip between clearing inflight and queueing the ack.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	switch {
	case err == nil:
		c.enqueue(mustJSON(ackFrame{Type: typeAck, Nonce: req.Nonce, Message: msg}))
	case c.ctx.Err() == nil:
		c.enqueue(errFrame(c.clientErr("send", req.RoomID, err), req.RoomID, &req.Nonce))
	}
	for _, f := range c.held {
		c.enqueue(f)
	}
	c.inflight, c.held = "", nil
}

// typing relays a typing notice to the room, at most once per
// TypingInterval per room, and only for rooms the user may access.
func (c *conn) typing(id chat.ID) {
	g := c.g
	now := time.Now()
	if t, ok := c.typingAt[id]; ok && now.Sub(t) < g.cfg.TypingInterval {
		return
	}
	if len(c.typingAt) >= 64 {
		for k, t := range c.typingAt {
			if now.Sub(t) >= g.cfg.TypingInterval {
				delete(c.typingAt, k)
			}
		}
	}
	// Recorded before the check, so a client cannot turn typing frames
	// into a stream of access checks either.
	c.typingAt[id] = now
	ctx, cancel := context.WithTimeout(c.ctx, g.cfg.RequestTimeout)
	err := g.deps.Rooms.CheckAccess(ctx, c.caller.User.ID, id)
	cancel()
	if err != nil {
		if c.ctx.Err() != nil {
			return
		}
		c.enqueue(errFrame(c.clientErr("typing", id, err), id, nil))
		return
	}
	u := c.caller.User
	msg := &nats.Msg{
		Subject: chat.RoomSubject(id),
		Header:  nats.Header{},
		Data:    mustJSON(typingFrame{Type: typeTyping, RoomID: id, UserID: u.ID, Username: u.Username}),
	}
	msg.Header.Set(chat.HeaderType, typeTyping)
	msg.Header.Set(chat.HeaderUser, strconv.FormatInt(int64(u.ID), 10))
	if err := g.deps.NC.PublishMsg(msg); err != nil {
		c.log.Warn("publish typing", "room_id", id, "err", err)
	}
}
