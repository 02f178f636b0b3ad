package gateway

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/chat"
)

// opsQueue is how many parsed requests may wait for a connection's worker.
// When it is full the reader stops reading, which pushes back on the client
// through TCP instead of buffering without bound. Sends do not stop the
// reader (see pushSend): up to maxQueuedSends of them, with at most
// maxQueuedSendBytes of bodies, may wait beyond it.
const (
	opsQueue           = 32
	maxQueuedSends     = 1024
	maxQueuedSendBytes = 1 << 20
)

// conn is one WebSocket connection. An idle connection costs one goroutine
// (its reader) and no buffers beyond the library's small ones: the worker
// and the flusher run only while there is work, and the gateway's ping loop
// pings it.
type conn struct {
	g      *Gateway
	id     uint64
	caller chat.Caller
	ws     *websocket.Conn
	wire   *wire
	br     *bufio.Reader // the library's read buffer
	// readGate orders the reader's look at br.Buffered with the close
	// handshake, which reads br on another goroutine.
	readGate sync.Mutex

	dead    atomic.Bool // kill was called: the connection is closing
	started atomic.Bool // start has set ws and wire
	closing sync.Once
	// Set once by kill; read when closing.
	closeMu     sync.Mutex
	closeCode   websocket.StatusCode
	closeReason string
	drain       bool
	// reqCancel cancels the request the worker is running (guarded by
	// closeMu), so kill ends it at once. The socket's own reads and writes
	// take no context: cancelling a coder/websocket operation tears the
	// TCP connection down, and the close handshake still needs it.
	reqCancel context.CancelFunc

	// tasks counts the worker and the closer, so run returns only after
	// both are done.
	tasks sync.WaitGroup

	opsMu   sync.Mutex
	opsCond sync.Cond // signals room in ops, and kill
	ops     []request
	working bool // a worker goroutine is running ops
	// queuedSends and queuedSendBytes count the sends in ops and their
	// bodies' bytes.
	queuedSends, queuedSendBytes int

	pinging  atomic.Bool // a ping waits for its pong
	pingTick uint64      // the ping loop's tick when it opened
	expiry   *time.Timer // session expiry; nil if it never expires
	bad      int         // invalid frames in a row (reader only)

	rooms []*room // joined rooms, guarded by g.mu (a slice: most sockets are in one room)

	typingAt map[chat.ID]time.Time // worker only; made on first use

	// inflight is the nonce of the send being posted, and held the room
	// frames of that message that arrived before its ack: API.md promises
	// the sender its ack first, then the message, but the ingest reply and
	// the room fanout reach this process on different NATS callbacks.
	// ack is the last send's ack while it waits for that message's frame,
	// ackNonce its nonce, so that the two go out in one write (see send);
	// ackTimer writes it alone if the frame is late.
	sendMu   sync.Mutex
	inflight string
	held     [][]byte
	ack      []byte
	ackNonce string
	ackTimer *time.Timer
}

// ackHold is how long an ack waits for its own message's room frame (the
// default of Gateway.ackHold). The frame comes through the process's NATS
// connection right after the ack (ingest answers a batch, then publishes
// it), typically within a fraction of a millisecond; waiting for it turns
// the sender's two socket writes per send into one. Past ackHold the ack
// goes alone, as it would have.
const ackHold = 2 * time.Millisecond

// holdOwnFrame takes a frame of a message this connection sent: written
// at once with its ack if the ack waits for it, kept until the ack is
// queued if it is still being posted. It reports whether the frame was
// the connection's own.
func (c *conn) holdOwnFrame(nonce string, frame []byte) bool {
	if nonce == "" {
		return false
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	switch nonce {
	case c.ackNonce:
		if c.ack == nil {
			return false
		}
		c.enqueueFrames([][]byte{c.ack, frame})
		c.ack, c.ackNonce = nil, ""
		c.ackTimer.Stop()
		return true
	case c.inflight:
		c.held = append(c.held, frame)
		return true
	}
	return false
}

// flushAck writes an ack that still waits for its message's frame.
func (c *conn) flushAck() {
	c.sendMu.Lock()
	c.flushAckLocked()
	c.sendMu.Unlock()
}

func (c *conn) flushAckLocked() {
	if c.ack == nil {
		return
	}
	c.enqueueFrame(c.ack)
	c.ack, c.ackNonce = nil, ""
}

// inRoom reports whether room id's frames reach this connection live: it
// has joined the room and is not joining it (a join holds them back).
func (c *conn) inRoom(id chat.ID) bool {
	c.g.mu.Lock()
	r := c.roomOf(id)
	c.g.mu.Unlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.members[c]
	return m != nil && !m.joining
}

func newConn(g *Gateway, caller chat.Caller) *conn {
	c := &conn{
		g:      g,
		id:     g.nextID.Add(1),
		caller: caller,
	}
	c.opsCond.L = &c.opsMu
	return c
}

// logger is the connection's logger; built on use, since most
// connections never log.
func (c *conn) logger() *slog.Logger {
	return c.g.log.With("conn_id", c.id, "user_id", c.caller.User.ID)
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
	if c.reqCancel != nil {
		c.reqCancel()
	}
	c.closeMu.Unlock()
	c.opsMu.Lock()
	c.opsCond.Broadcast()
	c.opsMu.Unlock()
	if c.started.Load() {
		c.startClose()
	}
	return true
}

// requestCtx bounds one request of the worker by RequestTimeout and ends
// it when the connection is killed. Call done when the request is over.
func (c *conn) requestCtx() (ctx context.Context, done func()) {
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.RequestTimeout)
	c.closeMu.Lock()
	if c.dead.Load() {
		cancel()
	} else {
		c.reqCancel = cancel
	}
	c.closeMu.Unlock()
	return ctx, func() {
		c.closeMu.Lock()
		c.reqCancel = nil
		c.closeMu.Unlock()
		cancel()
	}
}

// startClose runs the close handshake once, in its own goroutine.
func (c *conn) startClose() {
	c.closing.Do(func() {
		c.tasks.Add(1)
		go func() {
			defer c.tasks.Done()
			c.closeSocket()
		}()
	})
}

// closeStatus returns what kill recorded.
func (c *conn) closeStatus() (websocket.StatusCode, string, bool) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closeCode, c.closeReason, c.drain
}

// enqueue frames a JSON payload and queues it; see enqueueFrame.
func (c *conn) enqueue(payload []byte) bool {
	return c.enqueueFrame(wsText(payload))
}

// enqueueFrames writes or queues frames in order, in one write when the
// socket is idle; see enqueueFrame.
func (c *conn) enqueueFrames(frames [][]byte) bool {
	switch len(frames) {
	case 0:
		return true
	case 1:
		return c.enqueueFrame(frames[0])
	}
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	buf := make([]byte, 0, n)
	for _, f := range frames {
		buf = append(buf, f...)
	}
	if !c.enqueueFrame(buf) {
		return false
	}
	c.g.stats.framesOut.Add(int64(len(frames) - 1))
	return true
}

// enqueueFrame writes or queues a framed message without blocking. A full
// queue means the client reads slower than its rooms talk: it is dropped.
func (c *conn) enqueueFrame(frame []byte) bool {
	if c.dead.Load() || c.wire == nil {
		return false
	}
	switch c.wire.send(frame, c.g.cfg.SendQueue) {
	case sent:
		c.g.stats.framesOut.Add(1)
		return true
	case full:
		c.slow()
	}
	return false
}

// slow closes a connection that cannot keep up, dropping its queue.
func (c *conn) slow() {
	if c.kill(websocket.StatusTryAgainLater, "slow consumer", false) {
		c.g.stats.slow.Add(1)
		c.logger().Info("slow consumer disconnected")
	}
}

// onWriteError ends a connection whose socket failed.
func (c *conn) onWriteError(err error) {
	if c.kill(websocket.StatusInternalError, "write failed", false) {
		c.logger().Debug("write failed", "err", err)
	}
}

// serveConn runs the connection on its own goroutine until it is closed,
// then forgets it. The loop waits for input in this small frame, so an
// idle connection's stack is the least it can be (see waitReadable).
func (c *conn) serveConn(ws *websocket.Conn, w *wire, br *bufio.Reader, joinRoom chat.ID) {
	defer c.g.wg.Done()
	c.start(ws, w, br, joinRoom)
	for {
		c.readGate.Lock()
		buffered := br.Buffered()
		c.readGate.Unlock()
		if buffered == 0 {
			w.waitReadable()
		}
		if !c.readOne() {
			break
		}
	}
	c.finish()
}

//go:noinline
func (c *conn) start(ws *websocket.Conn, w *wire, br *bufio.Reader, joinRoom chat.ID) {
	c.ws, c.wire, c.br = ws, w, br
	c.started.Store(true)
	if c.dead.Load() {
		c.startClose() // killed before it started
	}
	if exp := c.caller.ExpiresAt; !exp.IsZero() {
		c.expiry = time.AfterFunc(time.Until(exp), func() {
			c.kill(websocket.StatusPolicyViolation, "session expired", true)
		})
	}
	if joinRoom != 0 {
		c.push(request{Type: typeJoin, RoomID: joinRoom})
	}
}

//go:noinline
func (c *conn) finish() {
	// However reading ended, the rest of the connection follows.
	c.kill(websocket.StatusNormalClosure, "", false)
	if c.expiry != nil {
		c.expiry.Stop()
	}
	// Once.Do returns only after the closer is counted, whoever started
	// it, so Wait cannot miss it.
	c.startClose()
	c.tasks.Wait()
	c.g.removeConn(c)
	code, reason, _ := c.closeStatus()
	c.logger().Info("connection closed", "code", int(code), "reason", reason)
}

// push queues a request for the worker, starting one if none runs. It
// waits while the queue is full; it reports false once the connection is
// closing.
func (c *conn) push(req request) bool {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	for len(c.ops) >= opsQueue && !c.dead.Load() {
		c.opsCond.Wait()
	}
	if c.dead.Load() {
		return false
	}
	c.queueLocked(req)
	return true
}

// pushSend queues a send without waiting, up to maxQueuedSends sends or
// maxQueuedSendBytes of their bodies per connection; beyond that it
// reports false. The reader must not wait on sends as push does: a client
// that sends faster than its sends are acked (the worker posts one at a
// time, in order) would stop it for as long as that lasted, its next sends
// queueing in the socket, each ack later than the last without bound and
// its pongs behind them until the connection timed out. A send that waits
// here longer than ShedAfter is refused by the worker instead of posted.
func (c *conn) pushSend(req request) bool {
	c.opsMu.Lock()
	defer c.opsMu.Unlock()
	if c.dead.Load() || c.queuedSends >= maxQueuedSends || c.queuedSendBytes+len(req.Body) > maxQueuedSendBytes {
		return false
	}
	c.queuedSends++
	c.queuedSendBytes += len(req.Body)
	c.queueLocked(req)
	return true
}

// shed answers sends the connection will not post: unavailable, each with
// its nonce, as ingest answers when its buffer is full. The answers go out
// in one write: under overload refusals come in runs, and a write system
// call per refusal cost more than the refusals saved.
func (c *conn) shed(why string, reqs ...request) {
	c.g.stats.shed.Add(int64(len(reqs)))
	err := chat.Errorf(chat.EUNAVAILABLE, "%s", why)
	frames := make([][]byte, len(reqs))
	for i := range reqs {
		frames[i] = wsText(errFrame(err, reqs[i].RoomID, &reqs[i].Nonce))
	}
	c.enqueueFrames(frames)
}

// queueLocked appends req to the queue, starting a worker if none runs.
// opsMu is held.
func (c *conn) queueLocked(req request) {
	req.at = time.Now()
	c.ops = append(c.ops, req)
	if !c.working {
		c.working = true
		c.tasks.Add(1)
		go c.work()
	}
}

// maxShedRun bounds the refusals written at once (about 200 bytes each).
const maxShedRun = 256

// popLocked takes the first queued request. opsMu is held.
func (c *conn) popLocked() request {
	req := c.ops[0]
	c.ops[0] = request{}
	c.ops = c.ops[1:]
	if req.Type == typeSend {
		c.queuedSends--
		c.queuedSendBytes -= len(req.Body)
	}
	return req
}

// staleLocked reports whether req is a send queued longer than ShedAfter
// before now. opsMu is held.
func (c *conn) staleLocked(req request, now time.Time) bool {
	return req.Type == typeSend && now.Sub(req.at) > c.g.cfg.ShedAfter
}

// work runs queued requests in order and ends when none is left.
func (c *conn) work() {
	defer c.tasks.Done()
	for {
		c.opsMu.Lock()
		if len(c.ops) == 0 || c.dead.Load() {
			c.ops = nil
			c.working = false
			c.opsMu.Unlock()
			return
		}
		req := c.popLocked()
		// A send that waited past ShedAfter is refused, with the run of
		// such sends behind it: its client has likely given up on it,
		// and posting it now would only keep every later send waiting
		// as long.
		var stale []request
		if now := time.Now(); c.staleLocked(req, now) {
			stale = append(stale, req)
			for len(c.ops) > 0 && len(stale) < maxShedRun && c.staleLocked(c.ops[0], now) {
				stale = append(stale, c.popLocked())
			}
		}
		c.opsCond.Signal()
		c.opsMu.Unlock()
		if stale != nil || req.Type != typeSend {
			// An ack waiting for its message's frame goes before the
			// answers to later requests (a send flushes it itself, once
			// posted).
			c.flushAck()
		}
		if stale != nil {
			c.shed("server busy: the send waited too long to be posted; retry with the same nonce", stale...)
			continue
		}
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

// readOne reads and handles one client frame; false means reading ended.
//
//go:noinline
func (c *conn) readOne() bool {
	g := c.g
	typ, b, err := c.ws.Read(context.Background())
	if err != nil {
		if st := websocket.CloseStatus(err); st == -1 && !c.dead.Load() {
			c.logger().Debug("read ended", "err", err)
		}
		return false
	}
	g.stats.framesIn.Add(1)
	req, perr := parseRequest(typ, b)
	if perr != nil {
		g.stats.badFrames.Add(1)
		if c.bad++; c.bad > g.cfg.MaxBadFrames {
			c.kill(websocket.StatusPolicyViolation, "too many invalid frames", true)
			return false
		}
		var nonce *string
		if req.Type == typeSend {
			nonce = &req.Nonce
		}
		c.enqueue(errFrame(perr, req.RoomID, nonce))
		return true
	}
	c.bad = 0
	if req.Type == typePing {
		// Answered here, not by the worker, so a keepalive is never
		// stuck behind a slow send.
		c.enqueueFrame(pongWire)
		return true
	}
	if req.Type == typeSend {
		if !c.pushSend(req) && !c.dead.Load() {
			// Refused at once, not stored: the client retries with the
			// same nonce once its earlier sends are answered.
			c.shed("server busy: too many sends waiting on this connection; retry with the same nonce", req)
		}
		return !c.dead.Load()
	}
	return c.push(req)
}

// closeSocket runs the close handshake with what kill recorded. Frames
// queued before it are written first when kill asked to drain them.
func (c *conn) closeSocket() {
	// The handshake reads the peer's close frame from br while the
	// reader may be waiting for input outside the library's lock.
	c.readGate.Lock()
	defer c.readGate.Unlock()
	code, reason, drain := c.closeStatus()
	c.sendMu.Lock()
	if drain && c.ack != nil {
		// The ack is owed: it goes out with the queued frames (the
		// connection is dead, so enqueueFrame would drop it).
		c.wire.send(c.ack, c.g.cfg.SendQueue)
	}
	c.ack = nil
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.sendMu.Unlock()
	if !drain {
		c.wire.dropQueued()
	}
	_ = c.ws.Close(code, reason)
}

// ping checks the peer is alive; the gateway's ping loop calls it once
// per PingInterval, on a goroutine of its own.
func (c *conn) ping() {
	defer c.pinging.Store(false)
	if c.dead.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.PongTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		// A peer that does not answer pings will not answer a close
		// handshake either.
		c.kill(websocket.StatusPolicyViolation, "pong timeout", false)
		_ = c.ws.CloseNow()
	}
}

// roomOf returns the joined room id, nil if none. Caller holds g.mu.
func (c *conn) roomOf(id chat.ID) *room {
	for _, r := range c.rooms {
		if r.id == id {
			return r
		}
	}
	return nil
}

// dropRoom forgets room id. Caller holds g.mu.
func (c *conn) dropRoom(id chat.ID) {
	for i, r := range c.rooms {
		if r.id == id {
			last := len(c.rooms) - 1
			c.rooms[i] = c.rooms[last]
			c.rooms[last] = nil
			c.rooms = c.rooms[:last]
			return
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
	if c.roomOf(req.RoomID) == nil && len(c.rooms) >= g.cfg.MaxRoomsPerConn {
		g.mu.Unlock()
		c.enqueue(errFrame(chat.Errorf(chat.EINVALID, "joined too many rooms"), req.RoomID, nil))
		return
	}
	r, m, existed, err := g.joinLocked(c, req.RoomID)
	g.mu.Unlock()
	if err != nil {
		c.logger().Error("subscribe room", "room_id", req.RoomID, "err", err)
		c.enqueue(errFrame(chat.Errorf(chat.EUNAVAILABLE, "cannot join now, try again"), req.RoomID, nil))
		return
	}

	ctx, done := c.requestCtx()
	defer done()
	// Over NATS, subscribing only queues the SUB; Sync's round trip
	// guarantees the server has it before we read the store, so no message
	// can fall between the snapshot and the live stream.
	if ferr := g.bus.Sync(ctx); ferr != nil && !c.dead.Load() {
		c.logger().Warn("flush room subscription", "room_id", req.RoomID, "err", ferr)
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
		if c.dead.Load() {
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
		if c.enqueueFrame(h.data) {
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
		c.logger().Warn("request timed out", "op", op, "room_id", room)
		return chat.Errorf(chat.EUNAVAILABLE, "timed out, try again")
	case chat.ErrorCode(err) == chat.EINTERNAL:
		c.logger().Error("request failed", "op", op, "room_id", room, "err", err)
	}
	return err
}

func isDenied(err error) bool {
	code := chat.ErrorCode(err)
	return code == chat.ENOTFOUND || code == chat.EFORBIDDEN
}

func (c *conn) leave(id chat.ID) {
	c.g.mu.Lock()
	if r := c.roomOf(id); r != nil {
		c.g.leaveLocked(c, r)
	}
	c.g.mu.Unlock()
	c.enqueue(roomFrame(typeLeft, id))
}

func (c *conn) send(req request) {
	// An earlier ack may still wait for its frame while this send is
	// posted: with sends queued, the frame mostly comes meanwhile.
	c.sendMu.Lock()
	c.inflight = req.Nonce
	c.sendMu.Unlock()
	ctx, done := c.requestCtx()
	_, msgJSON, err := c.g.deps.Poster.PostEncoded(ctx, c.caller, req.RoomID, req.Body, req.Nonce)
	done()
	// Only a sender in the room gets the message's frame to wait for.
	// (A repeated nonce is acked with the first message and not fanned
	// out again: its ack waits g.ackHold for nothing, once per retry.)
	echo := err == nil && req.Nonce != "" && c.inRoom(req.RoomID)
	// The answer is queued under sendMu, so no frame of this message can
	// slip between clearing inflight and queueing the ack.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.flushAckLocked() // acks go out in order
	var answer []byte
	switch {
	case err == nil:
		answer = ackJSON(req.Nonce, msgJSON)
	case !c.dead.Load():
		answer = errFrame(c.clientErr("send", req.RoomID, err), req.RoomID, &req.Nonce)
	}
	switch {
	case answer != nil && echo && len(c.held) == 0:
		// holdOwnFrame writes it with the frame.
		c.ack, c.ackNonce = wsText(answer), req.Nonce
		if c.ackTimer == nil {
			c.ackTimer = time.AfterFunc(c.g.ackHold, c.flushAck)
		} else {
			c.ackTimer.Reset(c.g.ackHold)
		}
	case answer != nil:
		// The ack and the frames held for it go out in one write.
		c.enqueueFrames(append([][]byte{wsText(answer)}, c.held...))
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
	if c.typingAt == nil {
		c.typingAt = make(map[chat.ID]time.Time)
	}
	// Recorded before the check, so a client cannot turn typing frames
	// into a stream of access checks either.
	c.typingAt[id] = now
	ctx, done := c.requestCtx()
	err := g.deps.Rooms.CheckAccess(ctx, c.caller.User.ID, id)
	done()
	if err != nil {
		if c.dead.Load() {
			return
		}
		c.enqueue(errFrame(c.clientErr("typing", id, err), id, nil))
		return
	}
	u := c.caller.User
	f := chat.RoomFrame{Type: typeTyping, User: u.ID,
		Data: mustJSON(typingFrame{Type: typeTyping, RoomID: id, UserID: u.ID, Username: u.Username})}
	if err := g.bus.PublishRoom(id, f); err != nil {
		c.logger().Warn("publish typing", "room_id", id, "err", err)
	}
}
