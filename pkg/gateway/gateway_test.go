package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

func TestUpgradeAuth(t *testing.T) {
	e := newEnv(t, Config{})
	token, _ := e.user("alice")
	tests := []struct {
		name   string
		path   string
		header http.Header
		status int // 0: upgrade succeeds
	}{
		{"no token", "/api/v1/ws", nil, 401},
		{"bad bearer", "/api/v1/ws", http.Header{"Authorization": {"Bearer nope"}}, 401},
		{"not bearer", "/api/v1/ws", http.Header{"Authorization": {"Basic " + token}}, 401},
		{"bad cookie", "/api/v1/ws", http.Header{"Cookie": {"chatd_session=nope"}}, 401},
		{"bad query", "/api/v1/ws?token=nope", nil, 401},
		{"bearer", "/api/v1/ws", http.Header{"Authorization": {"Bearer " + token}}, 0},
		{"cookie", "/api/v1/ws", http.Header{"Cookie": {"chatd_session=" + token}}, 0},
		{"query", "/api/v1/ws?token=" + token, nil, 0},
		{"bad room id", "/api/v1/rooms/abc/ws?token=" + token, nil, 400},
		{"cross origin", "/api/v1/ws?token=" + token, http.Header{"Origin": {"http://evil.example"}}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := e.dialRaw(tt.path, &websocket.DialOptions{HTTPHeader: tt.header})
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				ws.Close(websocket.StatusNormalClosure, "")
				return
			}
			if err == nil {
				ws.CloseNow()
				t.Fatal("upgrade succeeded, want refusal")
			}
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("got %v (%v), want status %d", resp, err, tt.status)
			}
			if tt.status == 401 {
				body, _ := io.ReadAll(resp.Body)
				var eb struct {
					Error struct{ Code string } `json:"error"`
				}
				if json.Unmarshal(body, &eb) != nil || eb.Error.Code != chat.EUNAUTHENTICATED {
					t.Fatalf("401 body %q, want unauthenticated error", body)
				}
			}
		})
	}
}

func TestAllowedOrigins(t *testing.T) {
	e := newEnv(t, Config{AllowedOrigins: []string{"app.example"}})
	token, _ := e.user("alice")
	ws, _, err := e.dialRaw("/api/v1/ws?token="+token, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example"}}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	_, resp, err := e.dialRaw("/api/v1/ws?token="+token, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: got %v, want 403", err)
	}
}

func TestMaxConnsPerUser(t *testing.T) {
	e := newEnv(t, Config{MaxConnsPerUser: 2})
	token, _ := e.user("alice")
	c1 := e.dial(token)
	e.dial(token)
	_, resp, err := e.dialRaw("/api/v1/ws?token="+token, nil)
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("third connection: got %v, want 429", err)
	}
	// A closed connection frees its slot.
	c1.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "slot freed", func() bool { return e.g.Stats().ConnsCurrent == 1 })
	e.dial(token)
}

func TestJoinLatestOldestFirst(t *testing.T) {
	e := newEnv(t, Config{})
	token, alice := e.user("alice")
	room := e.room(false)
	var posted []chat.Message
	for i := range 15 {
		posted = append(posted, e.post(alice, room, fmt.Sprintf("m%d", i)))
	}
	c := e.dial(token)
	f := c.join(room)
	if len(f.Messages) != chat.LatestOnJoin {
		t.Fatalf("joined with %d messages, want %d", len(f.Messages), chat.LatestOnJoin)
	}
	for i, m := range f.Messages {
		if want := posted[5+i]; m.ID != want.ID || m.Body != want.Body || m.Username != "alice" {
			t.Fatalf("message %d = %+v, want %+v", i, m, want)
		}
	}
	if f.Truncated {
		t.Fatal("latest join marked truncated")
	}
	// An empty room answers an empty list, not null.
	empty := e.room(false)
	c.write(map[string]any{"type": "join", "room_id": empty.String()})
	f = c.expect("joined")
	if f.Messages == nil || len(f.Messages) != 0 || !strings.Contains(string(f.raw), `"messages":[]`) {
		t.Fatalf("empty room joined %s", f.raw)
	}
}

func TestJoinSince(t *testing.T) {
	e := newEnv(t, Config{})
	token, alice := e.user("alice")
	room := e.room(false)
	var posted []chat.Message
	for i := range 30 {
		posted = append(posted, e.post(alice, room, fmt.Sprintf("m%d", i)))
	}
	c := e.dial(token)
	c.write(map[string]any{"type": "join", "room_id": room.String(), "since": posted[4].ID.String()})
	f := c.expect("joined")
	if len(f.Messages) != 25 || f.Messages[0].ID != posted[5].ID || f.Messages[24].ID != posted[29].ID || f.Truncated {
		t.Fatalf("since join: %d messages, truncated=%v", len(f.Messages), f.Truncated)
	}

	// More than MaxSinceReplay: the oldest ones, marked truncated.
	big := e.room(false)
	var first chat.Message
	for i := range chat.MaxSinceReplay + 5 {
		m := e.post(alice, big, "x")
		if i == 0 {
			first = m
		}
	}
	c.write(map[string]any{"type": "join", "room_id": big.String(), "since": first.ID.String()})
	f = c.expect("joined")
	if len(f.Messages) != chat.MaxSinceReplay || !f.Truncated {
		t.Fatalf("big since join: %d messages, truncated=%v", len(f.Messages), f.Truncated)
	}
}

func TestJoinDenied(t *testing.T) {
	e := newEnv(t, Config{})
	token, _ := e.user("alice")
	_, bob := e.user("bob")
	private := e.room(true, bob.User.ID)
	c := e.dial(token)
	for _, room := range []chat.ID{private, 999999} {
		c.write(map[string]any{"type": "join", "room_id": room.String()})
		f := c.expect("error")
		if f.Code != chat.ENOTFOUND || f.RoomID != room {
			t.Fatalf("join %v: %s", room, f.raw)
		}
		if e.g.subscribed(room) {
			t.Fatalf("still subscribed to %v after a refused join", room)
		}
	}
}

// A message stored before the snapshot arrives live during the join, and
// one stored after the snapshot arrives before joined is sent: the client
// must get the first once (in joined) and the second once, after joined.
func TestJoinHoldAndDedupe(t *testing.T) { onEachBus(t, testJoinHoldAndDedupe) }

func testJoinHoldAndDedupe(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{}, bus)
	token, alice := e.user("alice")
	room := e.room(false)
	old := e.post(alice, room, "old")
	var inSnapshot, afterSnapshot chat.Message
	e.store.mu.Lock()
	e.store.beforeSnapshot = func(r chat.ID) {
		inSnapshot = e.post(alice, r, "during fetch")
	}
	e.store.afterSnapshot = func(r chat.ID) {
		afterSnapshot = e.post(alice, r, "after snapshot")
		// Both live frames must be held before joined goes out.
		waitFor(t, "frames held", func() bool { return e.g.held(r) == 2 })
	}
	e.store.mu.Unlock()

	c := e.dial(token)
	f := c.join(room)
	if len(f.Messages) != 2 || f.Messages[0].ID != old.ID || f.Messages[1].ID != inSnapshot.ID {
		t.Fatalf("joined %s", f.raw)
	}
	m := c.expect("message")
	if m.Message.ID != afterSnapshot.ID {
		t.Fatalf("after joined got %s, want message %v", m.raw, afterSnapshot.ID)
	}
	if extra := c.sync(); len(extra) != 0 {
		t.Fatalf("unexpected frames after join: %s", extra[0].raw)
	}

	// A late live copy of a message already in joined (ingest publishing
	// after storing) is dropped too; newer messages still flow.
	e.store.mu.Lock()
	e.store.beforeSnapshot, e.store.afterSnapshot = nil, nil
	e.store.mu.Unlock()
	if err := publishMessage(e.bus, inSnapshot, ""); err != nil {
		t.Fatal(err)
	}
	newer := e.post(alice, room, "newer")
	if m := c.expect("message"); m.Message.ID != newer.ID {
		t.Fatalf("got %s, want only the newer message", m.raw)
	}
}

func TestRejoinAndLeave(t *testing.T) {
	e := newEnv(t, Config{})
	token, alice := e.user("alice")
	room := e.room(false)
	c := e.dial(token)
	c.join(room)
	m := e.post(alice, room, "hello")
	c.expect("message")
	f := c.join(room)
	if len(f.Messages) != 1 || f.Messages[0].ID != m.ID {
		t.Fatalf("re-join %s", f.raw)
	}
	if n := e.g.members(room); n != 1 {
		t.Fatalf("%d memberships after re-join, want 1", n)
	}
	if s := e.g.Stats(); s.Rooms != 1 || s.Joins != 2 {
		t.Fatalf("stats %+v", s)
	}
	c.write(map[string]any{"type": "leave", "room_id": room.String()})
	if f := c.expect("left"); f.RoomID != room {
		t.Fatalf("left %s", f.raw)
	}
	waitFor(t, "unsubscribe", func() bool { return !e.g.subscribed(room) && e.g.Stats().Rooms == 0 })
}

func TestRoomPathJoins(t *testing.T) {
	e := newEnv(t, Config{})
	token, alice := e.user("alice")
	room := e.room(false)
	m := e.post(alice, room, "hi")
	c := e.dialPath("/api/v1/rooms/"+room.String()+"/ws", token)
	f := c.expect("joined")
	if f.RoomID != room || len(f.Messages) != 1 || f.Messages[0].ID != m.ID {
		t.Fatalf("joined %s", f.raw)
	}
}

func TestSendAckAndFanout(t *testing.T) { onEachBus(t, testSendAckAndFanout) }

func testSendAckAndFanout(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{}, bus)
	aTok, alice := e.user("alice")
	bTok, _ := e.user("bob")
	room := e.room(false)
	a1, a2, b := e.dial(aTok), e.dial(aTok), e.dial(bTok)
	for _, c := range []*client{a1, a2, b} {
		c.join(room)
	}
	a1.write(map[string]any{"type": "send", "room_id": room.String(), "body": "hello", "nonce": "n1"})
	var ack, msg frame
	for range 2 {
		f := a1.next()
		switch f.Type {
		case "ack":
			ack = f
		case "message":
			msg = f
		default:
			t.Fatalf("sender got %s", f.raw)
		}
	}
	if ack.Nonce == nil || *ack.Nonce != "n1" || ack.Message == nil || ack.Message.Body != "hello" || ack.Message.UserID != alice.User.ID {
		t.Fatalf("ack %s", ack.raw)
	}
	if msg.Message == nil || msg.Message.ID != ack.Message.ID {
		t.Fatalf("sender's message %s", msg.raw)
	}
	for _, c := range []*client{a2, b} {
		if f := c.expect("message"); f.Message.ID != ack.Message.ID || f.Message.Body != "hello" {
			t.Fatalf("fanout %s", f.raw)
		}
	}
	// Sends are answered in order.
	for i := range 5 {
		a1.write(map[string]any{"type": "send", "room_id": room.String(), "body": "x", "nonce": fmt.Sprint("s", i)})
	}
	i := 0
	for i < 5 {
		f := a1.next()
		if f.Type != "ack" {
			continue
		}
		if *f.Nonce != fmt.Sprint("s", i) {
			t.Fatalf("ack %d has nonce %s", i, *f.Nonce)
		}
		i++
	}
	if s := e.g.Stats(); s.FramesIn == 0 || s.FramesOut == 0 || s.Fanout == 0 || s.ConnsCurrent != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSendWithoutJoinAndErrors(t *testing.T) {
	e := newEnv(t, Config{})
	aTok, _ := e.user("alice")
	_, bob := e.user("bob")
	room := e.room(false)
	private := e.room(true, bob.User.ID)
	c := e.dial(aTok)

	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "no join needed", "nonce": "a"})
	if f := c.expect("ack"); *f.Nonce != "a" {
		t.Fatalf("ack %s", f.raw)
	}
	c.write(map[string]any{"type": "send", "room_id": private.String(), "body": "hi", "nonce": "b"})
	if f := c.expect("error"); f.Code != chat.ENOTFOUND || f.Nonce == nil || *f.Nonce != "b" || f.RoomID != private {
		t.Fatalf("private send error %s", f.raw)
	}
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "   ", "nonce": "c"})
	if f := c.expect("error"); f.Code != chat.EINVALID || f.Nonce == nil || *f.Nonce != "c" {
		t.Fatalf("empty body error %s", f.raw)
	}
	// A send with no nonce still carries the (empty) nonce in its error.
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": ""})
	if f := c.expect("error"); f.Nonce == nil || *f.Nonce != "" {
		t.Fatalf("error without nonce %s", f.raw)
	}

	e.poster.mu.Lock()
	e.poster.limit = func() error {
		return &chat.Error{Code: chat.ERATELIMITED, Message: "slow down", RetryAfterMillis: 1500}
	}
	e.poster.mu.Unlock()
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "spam", "nonce": "d"})
	f := c.expect("error")
	if f.Code != chat.ERATELIMITED || f.RetryAfterMS != 1500 || *f.Nonce != "d" || f.RoomID != room {
		t.Fatalf("rate limited error %s", f.raw)
	}
}

func TestTyping(t *testing.T) { onEachBus(t, testTyping) }

func testTyping(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{TypingInterval: time.Hour}, bus)
	aTok, alice := e.user("alice")
	bTok, _ := e.user("bob")
	_, carol := e.user("carol")
	room := e.room(false)
	a, a2, b := e.dial(aTok), e.dial(aTok), e.dial(bTok)
	for _, c := range []*client{a, a2, b} {
		c.join(room)
	}
	a.write(map[string]any{"type": "typing", "room_id": room.String()})
	a.write(map[string]any{"type": "typing", "room_id": room.String()}) // throttled
	a.write(map[string]any{"type": "send", "room_id": room.String(), "body": "done typing", "nonce": "n"})

	f := b.expect("typing")
	if f.RoomID != room || f.UserID != alice.User.ID || f.Username != "alice" {
		t.Fatalf("typing %s", f.raw)
	}
	// The typing frames were published before the message, so anything
	// the throttle let through would come before it.
	if f := b.expect("message"); f.Message.Body != "done typing" {
		t.Fatalf("got %s", f.raw)
	}
	for _, c := range []*client{a, a2} {
		// a gets an ack too, in either order with the message.
		want := map[string]bool{"message": true}
		if c == a {
			want["ack"] = true
		}
		for len(want) > 0 {
			f := c.next()
			if f.Type == "typing" {
				t.Fatalf("typing echoed to the typist's own connection: %s", f.raw)
			}
			delete(want, f.Type)
		}
	}

	// No typing into rooms one may not access.
	private := e.room(true, carol.User.ID)
	a.write(map[string]any{"type": "typing", "room_id": private.String()})
	if f := a.expect("error"); f.Code != chat.ENOTFOUND || f.RoomID != private {
		t.Fatalf("typing in private room %s", f.raw)
	}
}

func TestBadFrames(t *testing.T) {
	e := newEnv(t, Config{MaxBadFrames: 3})
	token, _ := e.user("alice")
	c := e.dial(token)
	bad := []string{
		`not json`,
		`[1,2]`,
		`"string"`,
		`{"type":"nope"}`,
		`{}`,
		`{"type":"join"}`,
		`{"type":"join","room_id":"0"}`,
		`{"type":"join","room_id":"-4"}`,
		`{"type":"join","room_id":"12x"}`,
		`{"type":"join","room_id":"5","since":"0"}`,
		`{"type":"send","room_id":"5","nonce":"n"}`,
		`{"type":"send","room_id":true,"body":"x","nonce":"n2"}`,
	}
	for i, b := range bad {
		c.writeRaw(websocket.MessageText, []byte(b))
		f := c.expect("error")
		if f.Code != chat.EINVALID {
			t.Fatalf("%s: %s", b, f.raw)
		}
		if strings.Contains(b, `"send"`) && (f.Nonce == nil || !strings.HasPrefix(*f.Nonce, "n")) {
			t.Fatalf("%s: error without the send's nonce: %s", b, f.raw)
		}
		// A good frame resets the count, so the connection stays.
		if i%3 == 2 {
			if extra := c.sync(); len(extra) != 0 {
				t.Fatalf("unexpected %s", extra[0].raw)
			}
		}
	}
	c.writeRaw(websocket.MessageBinary, []byte(`{"type":"ping"}`))
	if f := c.expect("error"); f.Code != chat.EINVALID {
		t.Fatalf("binary frame: %s", f.raw)
	}
	c.sync()

	// More than MaxBadFrames in a row closes the connection with 1008.
	for range 4 {
		c.writeRaw(websocket.MessageText, []byte("garbage"))
	}
	c.expectClose(websocket.StatusPolicyViolation)
}

func TestOversizedFrame(t *testing.T) {
	e := newEnv(t, Config{MaxFrameBytes: 1024})
	token, _ := e.user("alice")
	c := e.dial(token)
	c.writeRaw(websocket.MessageText, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 900)+`"}`))
	c.expect("pong")
	c.writeRaw(websocket.MessageText, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`))
	c.expectClose(websocket.StatusMessageTooBig)
}

// A client that stops reading is closed with 1013 once its queue is full,
// while another client in the same room keeps getting every frame.
func TestSlowConsumer(t *testing.T) { onEachBus(t, testSlowConsumer) }

func testSlowConsumer(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{SendQueue: 16, WriteTimeout: time.Minute}, bus)
	fTok, _ := e.user("fast")
	sTok, _ := e.user("slow")
	_, poster := e.user("poster")
	room := e.room(false)
	fast, slow := e.dial(fTok), e.dial(sTok)
	fast.join(room)
	slow.join(room)

	// Large frames fill the socket buffers in fewer round trips.
	ids, _ := chat.NewIDGen(2)
	pad := strings.Repeat("x", 32<<10)
	seq := 0
	publishBatch := func() {
		for range 8 {
			id, at := ids.Next()
			m := chat.Message{ID: id, RoomID: room, UserID: poster.User.ID, Username: "poster", Body: fmt.Sprint(seq, " ", pad), CreatedAt: at}
			if err := publishMessage(e.bus, m, ""); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	got := 0
	readFast := func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		for got < seq {
			_, b, err := fast.ws.Read(ctx)
			if err != nil {
				t.Fatalf("fast reader: %v", err)
			}
			if want := fmt.Sprintf(`"body":"%d `, got); !strings.Contains(string(b[:200]), want) {
				t.Fatalf("fast reader got %.200s, want %s", b, want)
			}
			got++
		}
	}
	// Pace the room by the fast reader, so only the slow one falls behind.
	for batches := 0; e.g.Stats().SlowConsumers == 0; batches++ {
		if batches > 100000 {
			t.Fatal("slow reader never detected")
		}
		publishBatch()
		readFast()
	}
	for range 20 {
		publishBatch()
		readFast()
	}
	if s := e.g.Stats(); s.SlowConsumers != 1 {
		t.Fatalf("%d slow consumers, want 1", s.SlowConsumers)
	}
	// The slow client finally reads: what reached its socket, then 1013.
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for {
		_, _, err := slow.ws.Read(ctx)
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
			t.Fatalf("slow reader ended with %v, want close 1013", err)
		}
		break
	}
	waitFor(t, "slow connection gone", func() bool { return e.g.members(room) == 1 })
}

func TestControlRoomDeleted(t *testing.T) {
	e := newEnv(t, Config{})
	aTok, _ := e.user("alice")
	bTok, _ := e.user("bob")
	room, other := e.room(false), e.room(false)
	a, b := e.dial(aTok), e.dial(bTok)
	a.join(room)
	a.join(other)
	b.join(room)
	e.control(chat.ControlEvent{Type: chat.EventRoomDeleted, RoomID: room})
	for _, c := range []*client{a, b} {
		if f := c.expect("room_deleted"); f.RoomID != room {
			t.Fatalf("got %s", f.raw)
		}
	}
	waitFor(t, "room dropped", func() bool { return !e.g.subscribed(room) })
	if e.g.members(other) != 1 {
		t.Fatal("other room lost its member")
	}
}

func TestControlRemoved(t *testing.T) {
	e := newEnv(t, Config{})
	aTok, alice := e.user("alice")
	bTok, bob := e.user("bob")
	room := e.room(true, alice.User.ID, bob.User.ID)
	a, b := e.dial(aTok), e.dial(bTok)
	a.join(room)
	b.join(room)
	e.control(chat.ControlEvent{Type: chat.EventMemberRemoved, RoomID: room, UserID: bob.User.ID})
	if f := b.expect("removed"); f.RoomID != room {
		t.Fatalf("got %s", f.raw)
	}
	waitFor(t, "bob out of the room", func() bool { return e.g.members(room) == 1 })
	m := e.post(alice, room, "after removal")
	if f := a.expect("message"); f.Message.ID != m.ID {
		t.Fatalf("alice got %s", f.raw)
	}
}

func TestControlSessionRevoked(t *testing.T) {
	e := newEnv(t, Config{})
	tok1, alice := e.user("alice")
	tok2 := e.session(alice, time.Time{})
	c1, c2 := e.dial(tok1), e.dial(tok2)
	c1.sync()
	e.control(chat.ControlEvent{Type: chat.EventSessionRevoked, TokenHash: tokenHash(tok1)})
	if ce := c1.expectClose(websocket.StatusPolicyViolation); ce.Reason != "session revoked" {
		t.Fatalf("close reason %q", ce.Reason)
	}
	c2.sync() // the other session stays
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, Config{})
	_, alice := e.user("alice")
	tok := e.session(alice, time.Now().Add(300*time.Millisecond))
	c := e.dial(tok)
	if ce := c.expectClose(websocket.StatusPolicyViolation); ce.Reason != "session expired" {
		t.Fatalf("close reason %q", ce.Reason)
	}
}

func TestPingKeepalive(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 20 * time.Millisecond, PongTimeout: time.Second})
	token, _ := e.user("alice")
	c := e.dial(token)
	// The client answers pings while it reads; several intervals later
	// the connection is still up.
	end := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(end) {
		c.sync()
	}
	// Once it stops reading it no longer answers pings: dropped.
	waitFor(t, "silent client dropped", func() bool { return e.g.Stats().ConnsCurrent == 0 })
}

func TestShutdownClosesAndLeaksNothing(t *testing.T) { onEachBus(t, testShutdownClosesAndLeaksNothing) }

func testShutdownClosesAndLeaksNothing(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{}, bus)
	aTok, alice := e.user("alice")
	bTok, _ := e.user("bob")
	room := e.room(false)
	e.post(alice, room, "hi")
	base := runtime.NumGoroutine()

	var clients []*client
	for _, tok := range []string{aTok, aTok, bTok} {
		c := e.dial(tok)
		c.join(room)
		clients = append(clients, c)
	}
	clients[0].write(map[string]any{"type": "send", "room_id": room.String(), "body": "x", "nonce": "n"})
	clients[2].write(map[string]any{"type": "typing", "room_id": room.String()})
	for _, c := range clients {
		c.sync()
	}
	// Clients keep reading, as real ones do, so close handshakes complete.
	closed := make(chan error, len(clients))
	for _, c := range clients {
		go func() {
			for {
				if _, err := c.read(); err != nil {
					closed <- err
					return
				}
			}
		}()
	}
	e.shutdown()
	for range clients {
		if err := <-closed; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("client ended with %v, want 1001", err)
		}
	}
	if s := e.g.Stats(); s.ConnsCurrent != 0 || s.Rooms != 0 {
		t.Fatalf("after shutdown: %+v", s)
	}
	if e.nc.NumSubscriptions() != 0 {
		t.Fatalf("%d NATS subscriptions left", e.nc.NumSubscriptions())
	}
	if e.local != nil && e.local.Subscriptions() != 0 {
		t.Fatalf("%d local room subscriptions left", e.local.Subscriptions())
	}
	// The control subscription's goroutine is gone too, so the count
	// must drop below what it was with Run going.
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() < base })

	// After Run, new connections are refused.
	_, resp, err := e.dialRaw("/api/v1/ws?token="+aTok, nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

// Frames from NATS reach connections byte for byte, never re-encoded.
func TestFramesForwardedAsIs(t *testing.T) {
	e := newEnvOn(t, Config{}, natsBus)
	token, _ := e.user("alice")
	room := e.room(false)
	c := e.dial(token)
	c.join(room)
	raw := []byte(`{"type":"message","message":{"id":"99999999999","room_id":"` + room.String() + `","body":"x"},  "extra":1}`)
	msg := &nats.Msg{Subject: chat.RoomSubject(room), Header: nats.Header{}, Data: raw}
	msg.Header.Set(chat.HeaderType, "message")
	if err := e.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil || string(b) != string(raw) {
		t.Fatalf("got %q (%v), want %q", b, err, raw)
	}
}

func TestMaxRoomsPerConn(t *testing.T) {
	e := newEnv(t, Config{MaxRoomsPerConn: 1})
	token, _ := e.user("alice")
	r1, r2 := e.room(false), e.room(false)
	c := e.dial(token)
	c.join(r1)
	c.join(r1) // re-joining does not count twice
	c.write(map[string]any{"type": "join", "room_id": r2.String()})
	if f := c.expect("error"); f.Code != chat.EINVALID || f.RoomID != r2 {
		t.Fatalf("second room: %s", f.raw)
	}
	c.write(map[string]any{"type": "leave", "room_id": r1.String()})
	c.expect("left")
	c.join(r2)
}

// A client that closes its socket leaves every room it was in, and the
// room subscription goes with the last local member.
func TestClientCloseLeavesRooms(t *testing.T) {
	e := newEnv(t, Config{})
	aTok, _ := e.user("alice")
	bTok, _ := e.user("bob")
	r1, r2 := e.room(false), e.room(false)
	a, b := e.dial(aTok), e.dial(bTok)
	a.join(r1)
	a.join(r2)
	b.join(r1)
	a.ws.Close(websocket.StatusNormalClosure, "bye")
	waitFor(t, "alice gone", func() bool {
		return e.g.Stats().ConnsCurrent == 1 && e.g.members(r1) == 1 && !e.g.subscribed(r2)
	})
	if s := e.g.Stats(); s.Rooms != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// gateSends makes the poster wait for the returned release; entered
// counts the sends that reached it.
func gateSends(e *env) (entered *atomic.Int64, release func()) {
	gate := make(chan struct{})
	entered = new(atomic.Int64)
	e.poster.mu.Lock()
	e.poster.limit = func() error {
		entered.Add(1)
		<-gate
		return nil
	}
	e.poster.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	e.tb.Cleanup(release)
	return entered, release
}

// gatedSender is a gateway with cfg and one user's connection to a room of
// theirs, whose sends the poster holds until release.
func gatedSender(t *testing.T, cfg Config) (e *env, c *client, room chat.ID, entered *atomic.Int64, release func()) {
	e = newEnv(t, cfg)
	tok, alice := e.user("alice")
	room = e.room(false, alice.User.ID)
	c = e.dial(tok)
	entered, release = gateSends(e)
	return e, c, room, entered, release
}

func sendN(c *client, room chat.ID, from, to int, body string) {
	for i := from; i < to; i++ {
		c.write(map[string]any{"type": "send", "room_id": room.String(), "body": body, "nonce": fmt.Sprint("n", i)})
	}
}

// A send that waited in its connection's queue longer than ShedAfter is
// refused, in its turn and with its nonce, instead of posted; meanwhile the
// reader goes on, so pings are answered.
func TestSendsThatWaitedTooLongAreRefused(t *testing.T) {
	e, c, room, entered, release := gatedSender(t, Config{ShedAfter: 100 * time.Millisecond})

	sendN(c, room, 0, 1, "first")
	waitFor(t, "the first send to be posting", func() bool { return entered.Load() == 1 })
	// A typing notice between the waiting sends splits them into two
	// runs of refusals; the answers still come in order.
	sendN(c, room, 1, 6, "later")
	c.write(map[string]any{"type": "typing", "room_id": room.String()})
	sendN(c, room, 6, 11, "later")
	c.write(map[string]any{"type": "ping"})
	c.expect("pong")
	time.Sleep(150 * time.Millisecond)
	release()
	if f := c.expect("ack"); *f.Nonce != "n0" {
		t.Fatalf("first answer %s", f.raw)
	}
	for i := 1; i < 11; i++ {
		f := c.expect("error")
		if f.Code != chat.EUNAVAILABLE || f.Nonce == nil || *f.Nonce != fmt.Sprint("n", i) || f.RoomID != room {
			t.Fatalf("answer %d: %s", i, f.raw)
		}
	}
	if got := e.g.Stats().SendsShed; got != 10 {
		t.Fatalf("shed %d sends, want 10", got)
	}
	// The queue is empty again: the next send is posted.
	sendN(c, room, 11, 12, "again")
	if f := c.expect("ack"); *f.Nonce != "n11" {
		t.Fatalf("send after the refusals: %s", f.raw)
	}
}

// Sends beyond what a connection may queue (256, or 1 MB of bodies) are
// refused at once; everything queued before them is posted in order.
func TestSendsBeyondTheQueueAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		queued int
	}{
		{"count", "m", maxQueuedSends},
		{"bytes", strings.Repeat("é", 4000), maxQueuedSendBytes / len(strings.Repeat("é", 4000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c, room, entered, release := gatedSender(t, Config{ShedAfter: time.Minute})

			sendN(c, room, 0, 1, tc.body)
			waitFor(t, "the first send to be posting", func() bool { return entered.Load() == 1 })
			last := 1 + tc.queued + 3
			sendN(c, room, 1, last, tc.body)
			for i := 1 + tc.queued; i < last; i++ {
				f := c.expect("error")
				if f.Code != chat.EUNAVAILABLE || f.Nonce == nil || *f.Nonce != fmt.Sprint("n", i) {
					t.Fatalf("refused send %d: %s", i, f.raw)
				}
			}
			c.write(map[string]any{"type": "ping"})
			c.expect("pong")
			release()
			for i := 0; i <= tc.queued; i++ {
				if f := c.expect("ack"); *f.Nonce != fmt.Sprint("n", i) {
					t.Fatalf("ack %d: %s", i, f.raw)
				}
			}
			if got := e.g.Stats().SendsShed; got != 3 {
				t.Fatalf("shed %d sends, want 3", got)
			}
		})
	}
}

// A burst that drains in time is posted whole, as it always was.
func TestSendBurstThatDrainsIsNotRefused(t *testing.T) {
	e, c, room, _, release := gatedSender(t, Config{ShedAfter: 10 * time.Second})
	go func() {
		time.Sleep(200 * time.Millisecond)
		release()
	}()
	const n = maxQueuedSends
	sendN(c, room, 0, n, "burst")
	for i := range n {
		if f := c.expect("ack"); *f.Nonce != fmt.Sprint("n", i) {
			t.Fatalf("ack %d: %s", i, f.raw)
		}
	}
	if got := e.g.Stats().SendsShed; got != 0 {
		t.Fatalf("shed %d sends of a burst that drained", got)
	}
}

// An ack whose message frame never comes (a repeated nonce is not fanned
// out again) goes alone once the hold passes; a sender not in the room is
// acked without waiting at all.
func TestAckWithoutItsMessageFrameIsNotLost(t *testing.T) {
	e := newEnv(t, Config{})
	e.poster.likeIngest, e.poster.noFanout = true, true
	tok, _ := e.user("alice")
	room := e.room(false)
	c := e.dial(tok)
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "not joined", "nonce": "a"})
	if f := c.expect("ack"); *f.Nonce != "a" {
		t.Fatalf("ack %s", f.raw)
	}
	c.join(room)
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "no frame", "nonce": "b"})
	if f := c.expect("ack"); *f.Nonce != "b" {
		t.Fatalf("ack %s", f.raw)
	}
}

// An ack still waiting for its message frame is written before the
// answer to the client's next request, and before the close frame when
// the server shuts down.
func TestHeldAckGoesFirst(t *testing.T) { onEachBus(t, testHeldAckGoesFirst) }

func testHeldAckGoesFirst(t *testing.T, bus busKind) {
	e := newEnvOn(t, Config{}, bus)
	e.g.ackHold = time.Hour
	e.poster.likeIngest, e.poster.noFanout = true, true
	tok, _ := e.user("alice")
	room, other := e.room(false), e.room(false)
	c := e.dial(tok)
	c.join(room)
	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "x", "nonce": "a"})
	c.write(map[string]any{"type": "join", "room_id": other.String()})
	if f := c.expect("ack"); *f.Nonce != "a" {
		t.Fatalf("ack %s", f.raw)
	}
	c.expect("joined")

	c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "y", "nonce": "b"})
	// The ack waits (for an hour): a ping is answered by the reader at
	// once, so its pong shows the send was read; shutting down then
	// must still deliver the ack.
	c.write(map[string]any{"type": "ping"})
	c.expect("pong")
	waitFor(t, "the ack to wait", func() bool {
		e.g.mu.Lock()
		defer e.g.mu.Unlock()
		for cn := range e.g.conns {
			cn.sendMu.Lock()
			held := cn.ack != nil
			cn.sendMu.Unlock()
			if held {
				return true
			}
		}
		return false
	})
	frames := make(chan frame, 10)
	go func() {
		defer close(frames)
		for {
			f, err := c.read()
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	e.shutdown()
	var got []string
	for f := range frames {
		got = append(got, string(f.raw))
	}
	if len(got) != 1 || !strings.Contains(got[0], `"type":"ack","nonce":"b"`) {
		t.Fatalf("before the close frame the client got %q, want the ack of b", got)
	}
}

// Frames that queued while the process was behind reach the gateway as one
// batch: every member gets its frames of it in order, in one write, with
// the same rules as one at a time (no echo of one's own typing; a
// sender's own message through the ack path, after what came before it).
func TestBatchFanout(t *testing.T) {
	e := newEnv(t, Config{})
	aliceTok, alice := e.user("alice")
	bobTok, bob := e.user("bob")
	_, carol := e.user("carol")
	room := e.room(false)
	a, b := e.dial(aliceTok), e.dial(bobTok)
	a.join(room)
	b.join(room)
	e.g.mu.Lock()
	r := e.g.rooms[room]
	e.g.mu.Unlock()

	msg := func(u chat.Caller, body, nonce string) chat.RoomFrame {
		m := chat.Message{ID: e.id(), RoomID: room, UserID: u.User.ID, Username: u.User.Username, Body: body, CreatedAt: time.Now()}
		return chat.RoomFrame{Type: typeMessage, User: u.User.ID, Nonce: nonce, Data: messageFrame(m)}
	}
	typing := func(u chat.Caller) chat.RoomFrame {
		return chat.RoomFrame{Type: typeTyping, User: u.User.ID,
			Data: mustJSON(typingFrame{Type: typeTyping, RoomID: room, UserID: u.User.ID, Username: u.User.Username})}
	}
	before := e.g.Stats()
	e.g.onRoomFrames(r, []chat.RoomFrame{
		msg(carol, "m1", ""), typing(alice), msg(alice, "m2", ""), typing(bob), msg(bob, "m3", "n3"), msg(carol, "m4", ""),
	})
	got := func(c *client) []string {
		var out []string
		for range 5 {
			f := c.next()
			switch f.Type {
			case typeMessage:
				out = append(out, f.Message.Body)
			case typeTyping:
				out = append(out, "typing:"+f.Username)
			default:
				t.Fatalf("unexpected frame %s", f.raw)
			}
		}
		return out
	}
	if g, want := got(a), "[m1 m2 typing:bob m3 m4]"; fmt.Sprint(g) != want {
		t.Errorf("alice got %v, want %s", g, want)
	}
	if g, want := got(b), "[m1 typing:alice m2 m3 m4]"; fmt.Sprint(g) != want {
		t.Errorf("bob got %v, want %s", g, want)
	}
	after := e.g.Stats()
	if d := after.Fanout - before.Fanout; d != 10 {
		t.Errorf("deliveries counted %d, want 10", d)
	}
	if d := after.FramesOut - before.FramesOut; d != 10 {
		t.Errorf("frames out counted %d, want 10", d)
	}
	// One more frame shows nothing else was queued for either.
	e.g.onRoomFrames(r, []chat.RoomFrame{msg(carol, "last", "")})
	for _, c := range []*client{a, b} {
		if f := c.expect(typeMessage); f.Message.Body != "last" {
			t.Fatalf("got %s", f.raw)
		}
	}
}
