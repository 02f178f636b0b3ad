package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/natsbus"
)

// deadline bounds every wait in these tests. It is generous on purpose:
// tests poll for outcomes, they never assert on timing.
const deadline = 20 * time.Second

func startNATS(tb testing.TB) *nats.Conn {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(deadline) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// fakeUsers maps tokens to callers.
type fakeUsers struct {
	mu     sync.Mutex
	tokens map[string]chat.Caller
}

func (u *fakeUsers) Authenticate(_ context.Context, token string) (chat.Caller, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	c, ok := u.tokens[token]
	if !ok {
		return chat.Caller{}, chat.Errorf(chat.EUNAUTHENTICATED, "invalid session")
	}
	return c, nil
}

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

type fakeRoom struct {
	private bool
	members map[chat.ID]bool
}

// fakeRooms is the room role: public rooms are open to all, private ones
// to members; anything else does not exist.
type fakeRooms struct {
	mu    sync.Mutex
	rooms map[chat.ID]*fakeRoom
}

func (r *fakeRooms) CheckAccess(_ context.Context, userID, roomID chat.ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	room, ok := r.rooms[roomID]
	if !ok || room.private && !room.members[userID] {
		return chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	return nil
}

// fakeStore is the message store and query role in one.
type fakeStore struct {
	rooms *fakeRooms

	mu   sync.Mutex
	msgs map[chat.ID][]chat.Message // by room, ascending ID

	// Hooks around the snapshot of Latest/Since, to act inside the
	// join window.
	beforeSnapshot func(room chat.ID)
	afterSnapshot  func(room chat.ID)
}

func (s *fakeStore) add(m chat.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append(s.msgs[m.RoomID], m)
	sort.Slice(l, func(i, j int) bool { return l[i].ID < l[j].ID })
	s.msgs[m.RoomID] = l
}

func (s *fakeStore) hooks() (func(chat.ID), func(chat.ID)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beforeSnapshot, s.afterSnapshot
}

func (s *fakeStore) Latest(ctx context.Context, userID, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	if err := s.rooms.CheckAccess(ctx, userID, roomID); err != nil {
		return nil, err
	}
	pre, post := s.hooks()
	if pre != nil {
		pre(roomID)
	}
	s.mu.Lock()
	var out []chat.Message
	for _, m := range s.msgs[roomID] {
		if before == 0 || m.ID < before {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	out = append([]chat.Message(nil), out...)
	s.mu.Unlock()
	if post != nil {
		post(roomID)
	}
	return out, nil
}

func (s *fakeStore) Since(ctx context.Context, userID, roomID, since chat.ID, limit int) ([]chat.Message, bool, error) {
	if err := s.rooms.CheckAccess(ctx, userID, roomID); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []chat.Message
	for _, m := range s.msgs[roomID] {
		if m.ID > since {
			out = append(out, m)
		}
	}
	truncated := len(out) > limit
	if truncated {
		out = out[:limit]
	}
	return append([]chat.Message(nil), out...), truncated, nil
}

// fakePoster stores a message and publishes its frame, as ingest would.
type fakePoster struct {
	rooms *fakeRooms
	store *fakeStore
	bus   chat.RoomBus
	ids   *chat.IDGen

	mu    sync.Mutex
	limit func() error // rate limiter; nil: no limit
	// likeIngest publishes the room frame as ingest does: with the
	// sender's nonce in a header, after the answer. noFanout publishes
	// none, as ingest does for a repeated nonce.
	likeIngest, noFanout bool
}

func (p *fakePoster) Post(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, error) {
	return p.post(ctx, caller, roomID, body, nonce)
}

func (p *fakePoster) PostEncoded(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, []byte, error) {
	m, err := p.post(ctx, caller, roomID, body, nonce)
	if err != nil {
		return chat.Message{}, nil, err
	}
	return m, m.JSON(), nil
}

func (p *fakePoster) post(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, error) {
	if err := chat.ValidateBody(body); err != nil {
		return chat.Message{}, err
	}
	if err := chat.ValidateNonce(nonce); err != nil {
		return chat.Message{}, err
	}
	if err := p.rooms.CheckAccess(ctx, caller.User.ID, roomID); err != nil {
		return chat.Message{}, err
	}
	p.mu.Lock()
	limit := p.limit
	p.mu.Unlock()
	if limit != nil {
		if err := limit(); err != nil {
			return chat.Message{}, err
		}
	}
	id, at := p.ids.Next()
	m := chat.Message{ID: id, RoomID: roomID, UserID: caller.User.ID, Username: caller.User.Username, Body: body, CreatedAt: at, Nonce: nonce}
	p.store.add(m)
	p.mu.Lock()
	likeIngest, noFanout := p.likeIngest, p.noFanout
	p.mu.Unlock()
	switch {
	case noFanout:
	case likeIngest:
		go func() { _ = publishMessage(p.bus, m, nonce) }()
	default:
		if err := publishMessage(p.bus, m, ""); err != nil {
			return chat.Message{}, err
		}
	}
	return m, nil
}

func messageFrame(m chat.Message) []byte {
	b, _ := json.Marshal(struct {
		Type    string       `json:"type"`
		Message chat.Message `json:"message"`
	}{"message", m})
	return b
}

// publishMessage publishes m's room frame on bus, with the sender's nonce
// as ingest gives it for the sender's gateway.
func publishMessage(bus chat.RoomBus, m chat.Message, nonce string) error {
	return bus.PublishRoom(m.RoomID, chat.RoomFrame{Type: "message", User: m.UserID, Nonce: nonce, Data: messageFrame(m)})
}

// busKind is the room bus an env's gateway uses.
type busKind string

const (
	localBus busKind = "local" // natsbus.LocalRooms, as in one embedded process
	natsBus  busKind = "nats"  // natsbus.Rooms, as across processes
)

// onEachBus runs test once on each room bus.
func onEachBus(t *testing.T, test func(*testing.T, busKind)) {
	for _, b := range []busKind{localBus, natsBus} {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

// env is one gateway behind an httptest server, with fake roles.
type env struct {
	tb     testing.TB
	nc     *nats.Conn
	bus    chat.RoomBus
	local  *natsbus.LocalRooms // bus, when it is the local one
	users  *fakeUsers
	rooms  *fakeRooms
	store  *fakeStore
	poster *fakePoster
	g      *Gateway
	srv    *httptest.Server
	stop   context.CancelFunc
	done   chan error
	nextID chat.ID
}

// newEnv starts a gateway whose room frames go over the local bus, as in
// the default embedded mode.
func newEnv(tb testing.TB, cfg Config) *env {
	tb.Helper()
	return newEnvOn(tb, cfg, localBus)
}

// newEnvOn starts a gateway on the given room bus. Control events go over
// NATS either way.
func newEnvOn(tb testing.TB, cfg Config, kind busKind) *env {
	tb.Helper()
	nc := startNATS(tb)
	var bus chat.RoomBus = natsbus.NewRooms(nc)
	var local *natsbus.LocalRooms
	if kind == localBus {
		local = natsbus.NewLocalRooms(0, nil)
		bus = local
	}
	ids, _ := chat.NewIDGen(1)
	rooms := &fakeRooms{rooms: make(map[chat.ID]*fakeRoom)}
	store := &fakeStore{rooms: rooms, msgs: make(map[chat.ID][]chat.Message)}
	e := &env{
		tb:     tb,
		nc:     nc,
		bus:    bus,
		local:  local,
		users:  &fakeUsers{tokens: make(map[string]chat.Caller)},
		rooms:  rooms,
		store:  store,
		poster: &fakePoster{rooms: rooms, store: store, bus: bus, ids: ids},
		nextID: 1000,
	}
	e.g = New(cfg, Deps{Users: e.users, Rooms: rooms, Query: store, Poster: e.poster, NC: nc, Bus: bus}, nil)
	mux := http.NewServeMux()
	e.g.Register(mux)
	e.srv = httptest.NewServer(mux)
	tb.Cleanup(e.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- e.g.Run(ctx) }()
	tb.Cleanup(e.shutdown)
	// Run subscribes to control events in its own goroutine. Once the
	// subscription exists on the shared connection, events published on
	// that connection are ordered after it, so tests can publish at once.
	waitFor(tb, "control subscription", func() bool { return nc.NumSubscriptions() > 0 })
	return e
}

// shutdown stops Run and waits for it.
func (e *env) shutdown() {
	e.stop()
	select {
	case err := <-e.done:
		if err != nil {
			e.tb.Errorf("Run: %v", err)
		}
		e.done <- nil // later shutdown calls return at once
	case <-time.After(deadline):
		e.tb.Error("Run did not return after cancel")
	}
}

func (e *env) id() chat.ID {
	e.nextID++
	return e.nextID
}

// user creates a user with one session and returns its token.
func (e *env) user(name string) (string, chat.Caller) {
	c := chat.Caller{User: chat.User{ID: e.id(), Username: name, CreatedAt: time.Now()}}
	return e.session(c, time.Time{}), c
}

// session adds a session for c's user, expiring at exp (zero: never).
func (e *env) session(c chat.Caller, exp time.Time) string {
	token := "tok-" + c.User.Username + "-" + strconv.FormatInt(int64(e.id()), 10)
	c.TokenHash = tokenHash(token)
	c.ExpiresAt = exp
	e.users.mu.Lock()
	e.users.tokens[token] = c
	e.users.mu.Unlock()
	return token
}

func (e *env) room(private bool, members ...chat.ID) chat.ID {
	id := e.id()
	r := &fakeRoom{private: private, members: make(map[chat.ID]bool)}
	for _, m := range members {
		r.members[m] = true
	}
	e.rooms.mu.Lock()
	e.rooms.rooms[id] = r
	e.rooms.mu.Unlock()
	return id
}

// post posts a message as c, through the same path a send takes.
func (e *env) post(c chat.Caller, room chat.ID, body string) chat.Message {
	e.tb.Helper()
	m, err := e.poster.Post(context.Background(), c, room, body, "")
	if err != nil {
		e.tb.Fatalf("post: %v", err)
	}
	return m
}

func (e *env) control(ev chat.ControlEvent) {
	e.tb.Helper()
	b, _ := json.Marshal(ev)
	if err := e.nc.Publish(chat.SubjectControl, b); err != nil {
		e.tb.Fatalf("publish control: %v", err)
	}
}

func (e *env) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(e.srv.URL, "http") + path
}

// dialRaw dials path with opts and returns what Dial returned.
func (e *env) dialRaw(path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	return websocket.Dial(ctx, e.wsURL(path), opts)
}

// dial connects with token in the Authorization header.
func (e *env) dial(token string) *client {
	return e.dialPath("/api/v1/ws", token)
}

// dialTCP is dial that also returns the client's TCP socket.
func (e *env) dialTCP(token string) (*client, *net.TCPConn) {
	e.tb.Helper()
	var tcp *net.TCPConn
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			tcp = c.(*net.TCPConn)
		}
		return c, err
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, e.wsURL("/api/v1/ws"), &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		e.tb.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(-1)
	e.tb.Cleanup(func() { _ = ws.CloseNow() })
	return &client{tb: e.tb, ws: ws}, tcp
}

func (e *env) dialPath(path, token string) *client {
	e.tb.Helper()
	ws, _, err := e.dialRaw(path, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		e.tb.Fatalf("dial %s: %v", path, err)
	}
	ws.SetReadLimit(-1)
	e.tb.Cleanup(func() { _ = ws.CloseNow() })
	return &client{tb: e.tb, ws: ws}
}

// frame is any server frame.
type frame struct {
	Type         string          `json:"type"`
	RoomID       chat.ID         `json:"room_id"`
	Messages     []chat.Message  `json:"messages"`
	Truncated    bool            `json:"truncated"`
	Message      *chat.Message   `json:"-"` // of message and ack frames
	Text         string          `json:"-"` // message of error frames
	RawMessage   json.RawMessage `json:"message"`
	Nonce        *string         `json:"nonce"`
	Code         string          `json:"code"`
	RetryAfterMS int64           `json:"retry_after_ms"`
	UserID       chat.ID         `json:"user_id"`
	Username     string          `json:"username"`
	raw          []byte
}

type client struct {
	tb testing.TB
	ws *websocket.Conn
}

func (c *client) write(v any) {
	c.tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.writeRaw(websocket.MessageText, b)
}

func (c *client) writeRaw(typ websocket.MessageType, b []byte) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := c.ws.Write(ctx, typ, b); err != nil {
		c.tb.Fatalf("write: %v", err)
	}
}

func (c *client) next() frame {
	c.tb.Helper()
	f, err := c.read()
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	return f
}

func (c *client) read() (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	typ, b, err := c.ws.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, errors.New("binary frame from server")
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, err
	}
	f.raw = b
	if len(f.RawMessage) > 0 {
		if f.RawMessage[0] == '"' {
			err = json.Unmarshal(f.RawMessage, &f.Text)
		} else {
			f.Message = new(chat.Message)
			err = json.Unmarshal(f.RawMessage, f.Message)
		}
	}
	return f, err
}

// expect reads one frame and checks its type.
func (c *client) expect(typ string) frame {
	c.tb.Helper()
	f := c.next()
	if f.Type != typ {
		c.tb.Fatalf("got frame %s, want type %q", f.raw, typ)
	}
	return f
}

// join joins room and returns the joined frame.
func (c *client) join(room chat.ID) frame {
	c.tb.Helper()
	c.write(map[string]any{"type": "join", "room_id": room.String()})
	f := c.expect("joined")
	if f.RoomID != room {
		c.tb.Fatalf("joined room %v, want %v", f.RoomID, room)
	}
	return f
}

// expectClose reads (discarding frames) until the connection closes and
// checks the close code.
func (c *client) expectClose(code websocket.StatusCode) websocket.CloseError {
	c.tb.Helper()
	for {
		_, err := c.read()
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			c.tb.Fatalf("connection ended with %v, want close %d", err, code)
		}
		return ce
	}
}

// sync sends a ping and reads until its pong, returning what came before.
func (c *client) sync() []frame {
	c.tb.Helper()
	c.write(map[string]string{"type": "ping"})
	var before []frame
	for {
		f := c.next()
		if f.Type == "pong" {
			return before
		}
		before = append(before, f)
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("timed out waiting for %s\n%s", what, filterStacks(buf))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// held counts the frames held for joins in progress in room.
func (g *Gateway) held(room chat.ID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rooms[room]
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.members {
		n += len(m.held)
	}
	return n
}

// members counts local connections in room (0 if not subscribed).
func (g *Gateway) members(room chat.ID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rooms[room]
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

func (g *Gateway) subscribed(room chat.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rooms[room] != nil
}

// filterStacks keeps the goroutines that run gateway code, which is what
// a stuck wait needs to show.
func filterStacks(all []byte) string {
	var out []string
	for _, g := range strings.Split(string(all), "\n\n") {
		if strings.Contains(g, "pkg/gateway.") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
