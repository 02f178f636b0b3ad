// Package gateway is the WebSocket role: it authenticates connections, keeps
// a process-wide hub of room subscriptions on NATS, and forwards the room
// frames published by the ingest role (and typing frames of other gateways)
// to every local connection in the room.
//
// Each connection has one goroutine of its own, its reader. A worker that
// runs requests (join, leave, send, typing) in order, and a flusher that
// writes a backlog of frames, run only while there is work; one loop per
// process pings them all. Room frames are framed once per message and written to each
// member's socket without blocking (see wire.go). Nothing that fans out
// ever blocks on a connection: a connection whose queue is full is closed
// with 1013 instead.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/httpx"
	"github.com/chatd/chatd/pkg/natsbus"
)

// Config holds the gateway's limits. Zero values take the defaults below.
type Config struct {
	// MaxFrameBytes is the largest client frame accepted; a larger one
	// closes the connection with 1009. Default 16384.
	MaxFrameBytes int64
	// SendQueue is how many server frames may wait for one connection's
	// writer; a connection that falls further behind is closed with 1013.
	// Default 512.
	SendQueue int
	// PingInterval is how often the server pings each connection. Default 30s.
	PingInterval time.Duration
	// PongTimeout is how long a ping waits for its pong before the
	// connection is considered dead. Default 10s.
	PongTimeout time.Duration
	// WriteTimeout bounds each frame write. Default 10s.
	WriteTimeout time.Duration
	// RequestTimeout bounds each call to another role made for a client
	// request (fetching messages on join, posting a send). Default 15s.
	RequestTimeout time.Duration
	// MaxConnsPerUser caps simultaneous connections of one user; more get
	// 429 before the upgrade. Default 32.
	MaxConnsPerUser int
	// MaxRoomsPerConn caps the rooms one connection may have joined, so a
	// single socket cannot make the process hold unbounded subscriptions.
	// Default 256.
	MaxRoomsPerConn int
	// AllowedOrigins are host patterns (coder/websocket OriginPatterns) of
	// other origins allowed to open a WebSocket. Empty: same origin only.
	AllowedOrigins []string
	// MaxBadFrames is how many invalid frames in a row a connection may
	// send before it is closed with 1008. Default 10.
	MaxBadFrames int
	// TypingInterval is the minimum gap between typing frames relayed for
	// one connection and room; faster ones are dropped. Default 2s.
	TypingInterval time.Duration
	// ShedAfter is how long a send may wait in its connection's queue
	// before it is refused (unavailable, retry with the same nonce)
	// instead of posted: its connection sends faster than its sends are
	// acked. Default 3s.
	ShedAfter time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 16384
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 512
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = 32
	}
	if c.MaxRoomsPerConn <= 0 {
		c.MaxRoomsPerConn = 256
	}
	if c.MaxBadFrames <= 0 {
		c.MaxBadFrames = 10
	}
	if c.TypingInterval <= 0 {
		c.TypingInterval = 2 * time.Second
	}
	if c.ShedAfter <= 0 {
		c.ShedAfter = 3 * time.Second
	}
	return c
}

// Users resolves bearer tokens (the user role).
type Users interface {
	// Authenticate returns the caller of token; EUNAUTHENTICATED if the
	// token is unknown, expired or revoked.
	Authenticate(ctx context.Context, token string) (chat.Caller, error)
}

// Rooms checks room access (the room role).
type Rooms interface {
	// CheckAccess returns nil if the user may read and post in the room,
	// ENOTFOUND otherwise.
	CheckAccess(ctx context.Context, userID, roomID chat.ID) error
}

// Query reads messages, access-checked (the query role).
type Query interface {
	// Latest returns the newest limit messages older than before (0: the
	// newest), oldest first.
	Latest(ctx context.Context, userID, roomID, before chat.ID, limit int) ([]chat.Message, error)
	// Since returns the oldest limit messages after since, oldest first;
	// truncated reports that more exist.
	Since(ctx context.Context, userID, roomID, since chat.ID, limit int) ([]chat.Message, bool, error)
}

// Poster posts a message: it validates, checks access and the rate limit,
// and returns once the message is durable. Errors are *chat.Error; an
// ERATELIMITED one carries RetryAfterMillis.
type Poster interface {
	// PostEncoded also returns the message's JSON (chat.Message.JSON),
	// which the ack carries.
	PostEncoded(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, []byte, error)
}

// Deps are the gateway's collaborators.
type Deps struct {
	Users  Users
	Rooms  Rooms
	Query  Query
	Poster Poster
	// NC carries control events (chat.SubjectControl), and room frames
	// unless Bus is set.
	NC *nats.Conn
	// Bus carries room frames; nil: NATS on NC (natsbus.Rooms).
	Bus chat.RoomBus
}

// Stats is a snapshot of the gateway's counters, for metrics.
type Stats struct {
	ConnsCurrent  int64 // open connections
	ConnsTotal    int64 // connections accepted since start
	Rooms         int64 // rooms this process is subscribed to
	Joins         int64 // successful joins
	FramesIn      int64 // client frames read
	FramesOut     int64 // server frames written or queued for writing
	BadFrames     int64 // client frames refused as invalid
	SlowConsumers int64 // connections closed with 1013
	Fanout        int64 // room frames queued to connections
	SendsShed     int64 // sends refused unposted: their connection's queue was full or they waited ShedAfter
}

type counters struct {
	connsCurrent, connsTotal, rooms, joins           atomic.Int64
	framesIn, framesOut, badFrames, slow, deliveries atomic.Int64
	shed                                             atomic.Int64
}

// Gateway is the WebSocket role. Create it with New, mount it with Register
// and run it with Run.
type Gateway struct {
	cfg  Config
	deps Deps
	bus  chat.RoomBus
	log  *slog.Logger

	stats    counters
	ackHold  time.Duration // see the constant; tests lengthen it
	nextID   atomic.Uint64
	pingTick atomic.Uint64 // ticks of pingLoop so far

	mu        sync.Mutex
	closed    bool // Run has ended: no new connections
	rooms     map[chat.ID]*room
	conns     map[*conn]struct{}
	perUser   map[chat.ID]int
	bySession map[string]map[*conn]struct{}

	// wg counts connections (their handler goroutines), so Run can wait
	// for every one to finish closing.
	wg sync.WaitGroup
}

// New returns a gateway. It does nothing until Run and Register are called.
func New(cfg Config, deps Deps, log *slog.Logger) *Gateway {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bus := deps.Bus
	if bus == nil && deps.NC != nil {
		bus = natsbus.NewRooms(deps.NC)
	}
	return &Gateway{
		cfg:       cfg.withDefaults(),
		deps:      deps,
		bus:       bus,
		log:       log.With("role", "gateway"),
		ackHold:   ackHold,
		rooms:     make(map[chat.ID]*room),
		conns:     make(map[*conn]struct{}),
		perUser:   make(map[chat.ID]int),
		bySession: make(map[string]map[*conn]struct{}),
	}
}

// Stats returns the current counters.
func (g *Gateway) Stats() Stats {
	s := &g.stats
	return Stats{
		ConnsCurrent:  s.connsCurrent.Load(),
		ConnsTotal:    s.connsTotal.Load(),
		Rooms:         s.rooms.Load(),
		Joins:         s.joins.Load(),
		FramesIn:      s.framesIn.Load(),
		FramesOut:     s.framesOut.Load(),
		BadFrames:     s.badFrames.Load(),
		SlowConsumers: s.slow.Load(),
		Fanout:        s.deliveries.Load(),
		SendsShed:     s.shed.Load(),
	}
}

// Register mounts the WebSocket endpoints on mux.
func (g *Gateway) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/ws", func(w http.ResponseWriter, r *http.Request) {
		g.serve(w, r, 0)
	})
	mux.HandleFunc("GET /api/v1/rooms/{id}/ws", func(w http.ResponseWriter, r *http.Request) {
		id, err := chat.ParseID(r.PathValue("id"))
		if err != nil {
			httpx.WriteError(w, r, g.log, err)
			return
		}
		g.serve(w, r, id)
	})
}

// Run listens for control events until ctx ends, then closes every
// connection with 1001 (going away) and waits for them to finish.
func (g *Gateway) Run(ctx context.Context) error {
	if g.deps.NC == nil {
		return errors.New("gateway: no NATS connection")
	}
	sub, err := g.deps.NC.Subscribe(chat.SubjectControl, g.onControl)
	if err != nil {
		return fmt.Errorf("subscribe control events: %w", err)
	}
	// Make sure the server has the subscription before anyone relies on
	// events reaching this gateway.
	if err := g.deps.NC.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe control events: %w", err)
	}
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		g.pingLoop(ctx)
	}()
	<-ctx.Done()
	<-pingDone
	_ = sub.Unsubscribe()

	g.mu.Lock()
	g.closed = true
	for c := range g.conns {
		c.kill(websocket.StatusGoingAway, "going away", true)
	}
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

// pingSlots spreads the pings of PingInterval over this many ticks.
const pingSlots = 16

// pingLoop pings every connection once per PingInterval, a slot of them
// per tick, each on a short-lived goroutine. One loop for the process
// costs less than a timer per socket.
func (g *Gateway) pingLoop(ctx context.Context) {
	t := time.NewTicker(max(g.cfg.PingInterval/pingSlots, time.Millisecond))
	defer t.Stop()
	var due []*conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tick := g.pingTick.Add(1)
		slot := tick % pingSlots
		due = due[:0]
		g.mu.Lock()
		for c := range g.conns {
			// A connection's first ping comes a full interval after it opened.
			if c.id%pingSlots == slot && c.started.Load() && tick-c.pingTick >= pingSlots {
				due = append(due, c)
			}
		}
		g.mu.Unlock()
		for _, c := range due {
			if c.pinging.CompareAndSwap(false, true) {
				go c.ping()
			}
		}
		clear(due)
	}
}

// serve authenticates and upgrades one connection and hands it to a
// goroutine of its own (serveConn), which g.wg counts until the connection
// is fully closed. room, if set, is joined at once.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, room chat.ID) {
	token := httpx.Token(r, true)
	if token == "" {
		httpx.WriteError(w, r, g.log, chat.Errorf(chat.EUNAUTHENTICATED, "missing session token"))
		return
	}
	caller, err := g.deps.Users.Authenticate(r.Context(), token)
	if err != nil {
		httpx.WriteError(w, r, g.log, err)
		return
	}
	c, err := g.addConn(caller)
	if err != nil {
		httpx.WriteError(w, r, g.log, err)
		return
	}
	hj := &wireHijacker{ResponseWriter: w, timeout: g.cfg.WriteTimeout, onError: c.onWriteError}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.AllowedOrigins})
	if err != nil {
		// Accept has answered the request (403 for a foreign origin).
		g.log.Debug("upgrade refused", "user_id", caller.User.ID, "err", err)
		g.removeConn(c)
		g.wg.Done()
		return
	}
	ws.SetReadLimit(g.cfg.MaxFrameBytes)
	g.stats.connsTotal.Add(1)
	c.logger().Info("connection open", "remote_addr", r.RemoteAddr)
	// The connection runs on a goroutine of its own and this handler
	// returns: net/http's request state and the deep stack of its serving
	// goroutine are not kept alive for the connection's lifetime.
	go c.serveConn(ws, hj.wire, hj.br, room)
}

// addConn registers a connection of caller, enforcing the per-user cap.
func (g *Gateway) addConn(caller chat.Caller) (*conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, chat.Errorf(chat.EUNAVAILABLE, "server is shutting down")
	}
	uid := caller.User.ID
	if g.perUser[uid] >= g.cfg.MaxConnsPerUser {
		return nil, &chat.Error{Code: chat.ERATELIMITED, Message: "too many connections", RetryAfterMillis: 1000}
	}
	c := newConn(g, caller)
	c.pingTick = g.pingTick.Load()
	g.perUser[uid]++
	g.conns[c] = struct{}{}
	if caller.TokenHash != "" {
		s := g.bySession[caller.TokenHash]
		if s == nil {
			s = make(map[*conn]struct{})
			g.bySession[caller.TokenHash] = s
		}
		s[c] = struct{}{}
	}
	g.stats.connsCurrent.Add(1)
	g.wg.Add(1)
	return c, nil
}

// removeConn forgets a connection and takes it out of every room.
func (g *Gateway) removeConn(c *conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.conns[c]; !ok {
		return
	}
	delete(g.conns, c)
	uid := c.caller.User.ID
	if g.perUser[uid]--; g.perUser[uid] <= 0 {
		delete(g.perUser, uid)
	}
	if s := g.bySession[c.caller.TokenHash]; s != nil {
		delete(s, c)
		if len(s) == 0 {
			delete(g.bySession, c.caller.TokenHash)
		}
	}
	for len(c.rooms) > 0 { // leaveLocked takes each out
		g.leaveLocked(c, c.rooms[len(c.rooms)-1])
	}
	g.stats.connsCurrent.Add(-1)
}
