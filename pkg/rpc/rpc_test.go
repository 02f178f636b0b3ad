package rpc_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/rpc"
)

// calls records what a fake service received, so a test can check that the
// arguments crossed the wire unchanged.
type calls struct {
	mu   sync.Mutex
	last []any
}

func (c *calls) record(args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = args
}

func (c *calls) got() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// fakeUsers answers every call with its fields, or with err if set.
type fakeUsers struct {
	calls
	user    chat.User
	session chat.Session
	caller  chat.Caller
	token   string
	err     error
}

func (f *fakeUsers) Register(_ context.Context, username, password, displayName, email string) (chat.User, error) {
	f.record(username, password, displayName, email)
	return f.user, f.err
}

func (f *fakeUsers) Login(_ context.Context, username, password string) (string, chat.Session, chat.User, error) {
	f.record(username, password)
	return f.token, f.session, f.user, f.err
}

func (f *fakeUsers) Logout(_ context.Context, tokenHash string) error {
	f.record(tokenHash)
	return f.err
}

func (f *fakeUsers) Authenticate(_ context.Context, token string) (chat.Caller, error) {
	f.record(token)
	return f.caller, f.err
}

func (f *fakeUsers) User(_ context.Context, id chat.ID) (chat.User, error) {
	f.record(id)
	return f.user, f.err
}

func (f *fakeUsers) UserByName(_ context.Context, username string) (chat.User, error) {
	f.record(username)
	return f.user, f.err
}

type fakeRooms struct {
	calls
	room  chat.Room
	rooms []chat.Room
	ids   []chat.ID
	users []chat.User
	err   error
	panic bool
}

func (f *fakeRooms) CreateRoom(_ context.Context, caller chat.ID, name, description string, private bool) (chat.Room, error) {
	f.record(caller, name, description, private)
	return f.room, f.err
}

func (f *fakeRooms) Room(_ context.Context, caller, roomID chat.ID) (chat.Room, error) {
	f.record(caller, roomID)
	if f.panic {
		panic("boom")
	}
	return f.room, f.err
}

func (f *fakeRooms) ListRooms(_ context.Context, caller chat.ID) ([]chat.Room, error) {
	f.record(caller)
	return f.rooms, f.err
}

func (f *fakeRooms) UpdateRoom(_ context.Context, caller, roomID chat.ID, u chat.RoomUpdate) (chat.Room, error) {
	f.record(caller, roomID, u)
	return f.room, f.err
}

func (f *fakeRooms) DeleteRoom(_ context.Context, caller, roomID chat.ID) error {
	f.record(caller, roomID)
	return f.err
}

func (f *fakeRooms) AddMember(_ context.Context, caller, roomID chat.ID, username string) error {
	f.record(caller, roomID, username)
	return f.err
}

func (f *fakeRooms) RemoveMember(_ context.Context, caller, roomID, userID chat.ID) error {
	f.record(caller, roomID, userID)
	return f.err
}

func (f *fakeRooms) Members(_ context.Context, caller, roomID, after chat.ID, limit int) ([]chat.User, error) {
	f.record(caller, roomID, after, limit)
	return f.users, f.err
}

func (f *fakeRooms) CheckAccess(_ context.Context, userID, roomID chat.ID) error {
	f.record(userID, roomID)
	return f.err
}

func (f *fakeRooms) ReadableRooms(_ context.Context, userID chat.ID) ([]chat.ID, error) {
	f.record(userID)
	return f.ids, f.err
}

type fakeQuery struct {
	calls
	msgs      []chat.Message
	truncated bool
	page      chat.HistoryPage
	result    chat.SearchResult
	err       error
}

func (f *fakeQuery) Latest(_ context.Context, userID, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	f.record(userID, roomID, before, limit)
	return f.msgs, f.err
}

func (f *fakeQuery) Since(_ context.Context, userID, roomID, since chat.ID, limit int) ([]chat.Message, bool, error) {
	f.record(userID, roomID, since, limit)
	return f.msgs, f.truncated, f.err
}

func (f *fakeQuery) History(_ context.Context, userID chat.ID, q chat.HistoryQuery) (chat.HistoryPage, error) {
	f.record(userID, q)
	return f.page, f.err
}

func (f *fakeQuery) Search(_ context.Context, userID chat.ID, q chat.SearchQuery) (chat.SearchResult, error) {
	f.record(userID, q)
	return f.result, f.err
}

func testLog(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// serve runs a server on lis until the test ends.
func serve(tb testing.TB, lis net.Listener, users chat.UserService, rooms chat.RoomService, query chat.QueryService) *rpc.Server {
	tb.Helper()
	srv := rpc.NewServer(rpc.ServerConfig{ShutdownTimeout: 2 * time.Second}, users, rooms, query, testLog(tb))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	<-srv.Ready()
	return srv
}

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return lis
}

func dial(tb testing.TB, target string, cfg rpc.ClientConfig) *rpc.Client {
	tb.Helper()
	c, err := rpc.Dial(context.Background(), target, cfg, testLog(tb))
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	if c == nil {
		tb.Fatal("dial returned a nil client")
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Fixed values that exercise the conversions: nanoseconds, non-ASCII and
// control-free but unusual UTF-8, large IDs, and empty strings.
var (
	t0    = time.Date(2026, 11, 27, 7, 55, 1, 123456789, time.UTC)
	t1    = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) // proto's zero value, still a set time
	big   = chat.ID(1<<62 + 12345)
	alice = chat.User{ID: big, Username: "alice", DisplayName: "Zoë 🎉 界\u200d", Email: "a@example.com", CreatedAt: t0}
	room  = chat.Room{ID: big + 1, Name: "général 💬", Description: "", Private: true, OwnerID: big, CreatedAt: t1}
	msg1  = chat.Message{ID: big + 2, RoomID: big + 1, UserID: big, Username: "alice", Body: "héllo <b>&</b> 🙂\n\ttab", CreatedAt: t0, Nonce: "n-1"}
	msg2  = chat.Message{ID: big + 3, RoomID: big + 1, UserID: big, Username: "alice", Body: " x ", CreatedAt: t0.Add(1), EditedAt: &t1}
)

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	users := &fakeUsers{
		user:    alice,
		session: chat.Session{TokenHash: "h", UserID: big, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		caller:  chat.Caller{User: alice, TokenHash: "h", ExpiresAt: t0.Add(time.Hour)},
		token:   "tok",
	}
	rooms := &fakeRooms{room: room}
	query := &fakeQuery{}
	lis := listen(t)
	serve(t, lis, users, rooms, query)
	c := dial(t, lis.Addr().String(), rpc.ClientConfig{})
	ctx := context.Background()
	u, r, q := c.Users(), c.Rooms(), c.Query()

	// User service.
	got, err := u.Register(ctx, "alice", "pässwörd", "Zoë", "")
	check(t, "Register", got, alice)
	check(t, "Register err", err, nil)
	check(t, "Register args", users.got(), []any{"alice", "pässwörd", "Zoë", ""})

	tok, sess, lu, err := u.Login(ctx, "alice", "secret")
	check(t, "Login", []any{tok, sess, lu, err}, []any{"tok", users.session, alice, nil})
	check(t, "Login args", users.got(), []any{"alice", "secret"})

	check(t, "Logout", u.Logout(ctx, "hash"), nil)
	check(t, "Logout args", users.got(), []any{"hash"})

	caller, err := u.Authenticate(ctx, "tok")
	check(t, "Authenticate", []any{caller, err}, []any{users.caller, nil})

	got, err = u.User(ctx, big)
	check(t, "User", []any{got, err}, []any{alice, nil})
	check(t, "User args", users.got(), []any{big})

	got, err = u.UserByName(ctx, "alice")
	check(t, "UserByName", []any{got, err}, []any{alice, nil})

	// Text that is not UTF-8 reaches the service unchanged, as in process.
	_, _ = u.UserByName(ctx, "bad\xff\xfe")
	check(t, "UserByName invalid UTF-8", users.got(), []any{"bad\xff\xfe"})

	// Zero values stay zero.
	users.user = chat.User{}
	got, err = u.User(ctx, 0)
	check(t, "zero User", []any{got, err}, []any{chat.User{}, nil})

	// Room service.
	rm, err := r.CreateRoom(ctx, big, "général 💬", "", true)
	check(t, "CreateRoom", []any{rm, err}, []any{room, nil})
	check(t, "CreateRoom args", rooms.got(), []any{big, "général 💬", "", true})

	rm, err = r.Room(ctx, big, big+1)
	check(t, "Room", []any{rm, err}, []any{room, nil})
	check(t, "Room args", rooms.got(), []any{big, big + 1})

	for _, list := range [][]chat.Room{nil, {}, {room, {ID: 7, Name: "x"}}} {
		rooms.rooms = list
		rs, err := r.ListRooms(ctx, big)
		check(t, "ListRooms", []any{rs, err}, []any{list, nil})
	}

	name, empty := "new", ""
	for _, upd := range []chat.RoomUpdate{{}, {Name: &name}, {Description: &empty}, {Name: &empty, Description: &name}} {
		_, err = r.UpdateRoom(ctx, big, big+1, upd)
		check(t, "UpdateRoom err", err, nil)
		check(t, "UpdateRoom args", rooms.got(), []any{big, big + 1, upd})
	}

	check(t, "DeleteRoom", r.DeleteRoom(ctx, big, big+1), nil)
	check(t, "DeleteRoom args", rooms.got(), []any{big, big + 1})
	check(t, "AddMember", r.AddMember(ctx, big, big+1, "bob"), nil)
	check(t, "AddMember args", rooms.got(), []any{big, big + 1, "bob"})
	check(t, "RemoveMember", r.RemoveMember(ctx, big, big+1, 9), nil)
	check(t, "RemoveMember args", rooms.got(), []any{big, big + 1, chat.ID(9)})
	check(t, "CheckAccess", r.CheckAccess(ctx, 9, big+1), nil)
	check(t, "CheckAccess args", rooms.got(), []any{chat.ID(9), big + 1})
	for _, list := range [][]chat.User{{}, {alice, {ID: 7, Username: "bob", CreatedAt: t0}}} {
		rooms.users = list
		got, err := r.Members(ctx, big, big+1, big+2, 200)
		check(t, "Members", []any{got, err}, []any{list, nil})
		check(t, "Members args", rooms.got(), []any{big, big + 1, big + 2, 200})
	}

	for _, ids := range [][]chat.ID{nil, {}, {1, big, -5}} {
		rooms.ids = ids
		got, err := r.ReadableRooms(ctx, 9)
		check(t, "ReadableRooms", []any{got, err}, []any{ids, nil})
	}

	// Query service.
	for _, msgs := range [][]chat.Message{nil, {}, {msg1, msg2}} {
		query.msgs = msgs
		got, err := q.Latest(ctx, big, big+1, big+2, 50)
		check(t, "Latest", []any{got, err}, []any{msgs, nil})
		check(t, "Latest args", query.got(), []any{big, big + 1, big + 2, 50})
		for _, tr := range []bool{false, true} {
			query.truncated = tr
			got, truncated, err := q.Since(ctx, big, big+1, 3, 1000)
			check(t, "Since", []any{got, truncated, err}, []any{msgs, tr, nil})
			check(t, "Since args", query.got(), []any{big, big + 1, chat.ID(3), 1000})
		}
	}

	query.page = chat.HistoryPage{Messages: []chat.Message{msg2}, NextCursor: "c\x00\xff"}
	hq := chat.HistoryQuery{RoomID: big + 1, From: t1, To: t0, Limit: 20, Cursor: "opaque"}
	page, err := q.History(ctx, big, hq)
	check(t, "History", []any{page, err}, []any{query.page, nil})
	check(t, "History args", query.got(), []any{big, hq})
	page, err = q.History(ctx, big, chat.HistoryQuery{})
	check(t, "History zero", err, nil)
	check(t, "History zero args", query.got(), []any{big, chat.HistoryQuery{}})
	_ = page

	query.result = chat.SearchResult{Hits: []chat.SearchHit{{Message: msg1, Highlight: "<mark>héllo</mark>"}}, Total: 1 << 40, TotalRelation: chat.TotalGte, NextCursor: "next"}
	for _, sq := range []chat.SearchQuery{
		{Text: `"a phrase" pre*`, RoomIDs: nil, UserID: big, From: t0, Limit: 5, Cursor: "c"},
		{Text: "x", RoomIDs: []chat.ID{}},
		{Text: "x", RoomIDs: []chat.ID{big, 1}, To: t1},
	} {
		res, err := q.Search(ctx, big, sq)
		check(t, "Search", []any{res, err}, []any{query.result, nil})
		check(t, "Search args", query.got(), []any{big, sq})
	}
	query.result = chat.SearchResult{Hits: []chat.SearchHit{}, Total: 3, TotalRelation: chat.TotalEq}
	res, err := q.Search(ctx, big, chat.SearchQuery{Text: "x"})
	check(t, "Search exact total", []any{res, err}, []any{query.result, nil})
	query.result = chat.SearchResult{}
	res, err = q.Search(ctx, big, chat.SearchQuery{})
	check(t, "Search empty", []any{res, err}, []any{chat.SearchResult{}, nil})
}

// TestTimesKeepTheInstant checks times in other zones: they come back as
// the same instant in UTC.
func TestTimesKeepTheInstant(t *testing.T) {
	loc := time.FixedZone("X", -7*3600-1800)
	in := time.Date(2025, 3, 4, 5, 6, 7, 999999999, loc)
	users := &fakeUsers{user: chat.User{ID: 1, CreatedAt: in}}
	lis := listen(t)
	serve(t, lis, users, nil, nil)
	got, err := dial(t, lis.Addr().String(), rpc.ClientConfig{}).Users().User(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(in) || got.CreatedAt.Nanosecond() != 999999999 {
		t.Fatalf("CreatedAt %v, want %v", got.CreatedAt, in)
	}
}

func TestErrorsKeepTheirCodes(t *testing.T) {
	rooms := &fakeRooms{}
	lis := listen(t)
	serve(t, lis, nil, rooms, nil)
	r := dial(t, lis.Addr().String(), rpc.ClientConfig{}).Rooms()
	ctx := context.Background()

	for _, want := range []*chat.Error{
		chat.Errorf(chat.EINVALID, "name must be at most 100 characters"),
		chat.Errorf(chat.EUNAUTHENTICATED, "session expired"),
		chat.Errorf(chat.EFORBIDDEN, "owner only"),
		chat.Errorf(chat.ENOTFOUND, "room not found"),
		chat.Errorf(chat.ECONFLICT, "username %q is taken", "ü\xff"),
		chat.Errorf(chat.ETOOLARGE, "too large"),
		{Code: chat.ERATELIMITED, Message: "slow down", RetryAfterMillis: 1234},
		chat.Errorf(chat.EUNAVAILABLE, "database unavailable"),
		{Code: chat.EINTERNAL, Message: "internal error"},
		{Code: chat.EINVALID, Message: "not utf-8: \xff"},
	} {
		rooms.err = want
		err := r.DeleteRoom(ctx, 1, 2)
		var got *chat.Error
		if !errors.As(err, &got) {
			t.Fatalf("%s: got %v, want a *chat.Error", want.Code, err)
		}
		check(t, "error "+want.Code, got, want)
	}

	// A wrapped domain error keeps its code; a plain error becomes internal
	// with no detail leaking.
	rooms.err = errorsJoin("select * from rooms: connection reset", chat.Errorf(chat.ENOTFOUND, "room not found"))
	err := r.CheckAccess(ctx, 1, 2)
	check(t, "wrapped", [2]string{chat.ErrorCode(err), chat.ErrorMessage(err)}, [2]string{chat.ENOTFOUND, "room not found"})

	rooms.err = errors.New("pq: syntax error at or near SELECT")
	err = r.CheckAccess(ctx, 1, 2)
	check(t, "plain", [2]string{chat.ErrorCode(err), chat.ErrorMessage(err)}, [2]string{chat.EINTERNAL, "internal error"})

	// A panicking handler answers internal and the server keeps serving.
	rooms.err, rooms.panic = nil, true
	_, err = r.Room(ctx, 1, 2)
	check(t, "panic", chat.ErrorCode(err), chat.EINTERNAL)
	rooms.panic = false
	if _, err := r.Room(ctx, 1, 2); err != nil {
		t.Fatalf("after panic: %v", err)
	}
}

func errorsJoin(text string, err error) error {
	return &wrapped{text: text, err: err}
}

type wrapped struct {
	text string
	err  error
}

func (w *wrapped) Error() string { return w.text + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// TestUnregisteredServiceIsUnavailable: a peer that does not run the role.
func TestUnregisteredServiceIsUnavailable(t *testing.T) {
	lis := listen(t)
	serve(t, lis, &fakeUsers{}, nil, nil)
	_, err := dial(t, lis.Addr().String(), rpc.ClientConfig{Timeout: time.Second}).Query().Latest(context.Background(), 1, 2, 0, 10)
	check(t, "code", chat.ErrorCode(err), chat.EUNAVAILABLE)
}

// TestLateServer: a client made before its server is up waits for it within
// its deadline and then succeeds.
func TestLateServer(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()

	c := dial(t, addr, rpc.ClientConfig{Timeout: 10 * time.Second})
	go func() {
		time.Sleep(700 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("relisten: %v", err)
			return
		}
		serve(t, l, &fakeUsers{user: alice}, nil, nil)
	}()
	got, err := c.Users().User(context.Background(), big)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	check(t, "User", got, alice)
}

// TestNoServer: nothing ever listens; every call fails with EUNAVAILABLE
// once its deadline passes, never a panic, and the caller's deadline is
// still visible in the chain.
func TestNoServer(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	lis.Close()

	c := dial(t, addr, rpc.ClientConfig{Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.Rooms().Room(context.Background(), 1, 2)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("failed after %v, before its deadline: it should wait for the peer", d)
	}
	check(t, "code", chat.ErrorCode(err), chat.EUNAVAILABLE)
	check(t, "message", chat.ErrorMessage(err), "room service unavailable")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap context.DeadlineExceeded", err)
	}
	// A write, too.
	err = c.Users().Logout(context.Background(), "x")
	check(t, "write code", chat.ErrorCode(err), chat.EUNAVAILABLE)

	// The caller's own shorter deadline wins over the configured one.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.Query().Latest(ctx, 1, 2, 0, 10)
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("caller deadline ignored: took %v", d)
	}
	check(t, "short deadline code", chat.ErrorCode(err), chat.EUNAVAILABLE)

	// A cancelled caller gets its cancellation back.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = c.Query().Latest(ctx, 1, 2, 0, 10)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v, want context.Canceled", err)
	}
}

func TestDialRejectsEmptyTarget(t *testing.T) {
	c, err := rpc.Dial(context.Background(), "", rpc.ClientConfig{}, nil)
	if err == nil || c != nil {
		t.Fatalf("Dial(\"\") = %v, %v", c, err)
	}
}

func TestHealth(t *testing.T) {
	lis := listen(t)
	srv := rpc.NewServer(rpc.ServerConfig{}, &fakeUsers{}, &fakeRooms{}, nil, testLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	<-srv.Ready()
	check(t, "Addr", srv.Addr().String(), lis.Addr().String())

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	status := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		res, err := h.Check(cctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		return res.GetStatus()
	}
	for _, s := range []string{"", "chatd.v1.UserService", "chatd.v1.RoomService"} {
		check(t, "health "+s, status(s), healthpb.HealthCheckResponse_SERVING)
	}
	check(t, "health of the unregistered query service", status("chatd.v1.QueryService"), healthpb.HealthCheckResponse_SERVICE_UNKNOWN)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop after its context ended")
	}
}

// TestRun covers Run's own listener on an ephemeral port and its stop on
// context end.
func TestRun(t *testing.T) {
	srv := rpc.NewServer(rpc.ServerConfig{Addr: "127.0.0.1:0"}, &fakeUsers{user: alice}, nil, nil, testLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	got, err := dial(t, srv.Addr().String(), rpc.ClientConfig{}).Users().User(context.Background(), 1)
	check(t, "User", []any{got, err}, []any{alice, nil})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// flakyUsers answers EUNAVAILABLE to the first fails calls, then succeeds.
type flakyUsers struct {
	fakeUsers
	mu    sync.Mutex
	n     int
	fails int
}

func (f *flakyUsers) attempt() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n <= f.fails {
		return chat.Errorf(chat.EUNAVAILABLE, "database unavailable")
	}
	return nil
}

func (f *flakyUsers) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *flakyUsers) User(ctx context.Context, id chat.ID) (chat.User, error) {
	if err := f.attempt(); err != nil {
		return chat.User{}, err
	}
	return f.fakeUsers.User(ctx, id)
}

func (f *flakyUsers) Register(ctx context.Context, username, password, displayName, email string) (chat.User, error) {
	if err := f.attempt(); err != nil {
		return chat.User{}, err
	}
	return f.fakeUsers.Register(ctx, username, password, displayName, email)
}

// TestRetries: reads are retried on UNAVAILABLE, writes are not (a write
// that reached the server may have taken effect).
func TestRetries(t *testing.T) {
	users := &flakyUsers{fakeUsers: fakeUsers{user: alice}, fails: 2}
	lis := listen(t)
	serve(t, lis, users, nil, nil)
	u := dial(t, lis.Addr().String(), rpc.ClientConfig{}).Users()

	got, err := u.User(context.Background(), 1)
	check(t, "read after retries", []any{got, err}, []any{alice, nil})
	check(t, "read attempts", users.count(), 3)

	users.mu.Lock()
	users.n, users.fails = 0, 1
	users.mu.Unlock()
	_, err = u.Register(context.Background(), "bob", "password", "", "")
	check(t, "write error", chat.AsError(err), chat.Errorf(chat.EUNAVAILABLE, "database unavailable"))
	check(t, "write attempts", users.count(), 1)

	// Retries are bounded: a read that keeps failing returns the server's
	// error, unchanged.
	users.mu.Lock()
	users.n, users.fails = 0, 100
	users.mu.Unlock()
	_, err = u.User(context.Background(), 1)
	check(t, "persistent error", chat.AsError(err), chat.Errorf(chat.EUNAVAILABLE, "database unavailable"))
	check(t, "bounded attempts", users.count(), 4)
}

// TestRoundRobin: with several instances of a role behind one name, calls
// are spread over all of them.
func TestRoundRobin(t *testing.T) {
	const n = 3
	fakes := make([]*fakeUsers, n)
	var addrs []resolver.Address
	for i := range fakes {
		fakes[i] = &fakeUsers{user: chat.User{ID: chat.ID(i + 1)}}
		lis := listen(t)
		serve(t, lis, fakes[i], nil, nil)
		addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
	}
	// A manual resolver stands in for DNS answering with several addresses.
	r := manual.NewBuilderWithScheme("chatdtest")
	r.InitialState(resolver.State{Addresses: addrs})
	resolver.Register(r)

	u := dial(t, "chatdtest:///users", rpc.ClientConfig{}).Users()
	// round_robin only picks among sub-connections that are READY; on a
	// loaded machine the first calls may all land on the first one to
	// connect, so call until every instance has answered (bounded).
	seen := map[chat.ID]int{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		got, err := u.User(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		seen[got.ID]++
		time.Sleep(time.Millisecond)
	}
	if len(seen) != n {
		t.Fatalf("calls reached %d of %d instances: %v", len(seen), n, seen)
	}
}
