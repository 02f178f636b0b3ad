package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/chat"
)

func TestAccountsAndSessions(t *testing.T) {
	s := startServer(t, "", nil)
	u := s.base + "/api/v1/users"
	r := do(t, "POST", u, "", map[string]string{"username": "alice", "password": "password1", "display_name": "Alice A."})
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var alice chat.User
	r.decode(t, &alice)
	if alice.Username != "alice" || alice.DisplayName != "Alice A." || alice.ID == 0 || alice.CreatedAt.IsZero() {
		t.Fatalf("user object: %s", r.body)
	}
	if strings.Contains(string(r.body), "password") {
		t.Fatal("user object mentions the password")
	}

	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"taken", map[string]string{"username": "alice", "password": "password2"}, 409, "conflict"},
		{"short name", map[string]string{"username": "al", "password": "password1"}, 400, "invalid"},
		{"long name", map[string]string{"username": strings.Repeat("a", 33), "password": "password1"}, 400, "invalid"},
		{"upper case", map[string]string{"username": "Alice2", "password": "password1"}, 400, "invalid"},
		{"space", map[string]string{"username": "al ice", "password": "password1"}, 400, "invalid"},
		{"short password", map[string]string{"username": "bob", "password": "1234567"}, 400, "invalid"},
		{"not json", "{nope", 400, "invalid"},
		{"array", "[]", 400, "invalid"},
		{"wrong type", `{"username": 5, "password": "password1"}`, 400, "invalid"},
		{"invalid utf8 name", []byte("{\"username\":\"b\xffb\",\"password\":\"password1\"}"), 400, "invalid"},
		{"sql", map[string]string{"username": "x'; drop table users;--", "password": "password1"}, 400, "invalid"},
		{"oversized", `{"username":"bob","password":"` + strings.Repeat("p", 2<<20) + `"}`, 413, "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, "POST", u, "", c.body)
			if r.status != c.status || r.errCode(t) != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			for _, leak := range []string{"sql", "SQL", "goroutine", ".go:", "/home/", "/tmp/"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("error leaks %q: %s", leak, r.body)
				}
			}
		})
	}

	// Login: wrong password and unknown user look the same.
	for _, creds := range []map[string]string{{"username": "alice", "password": "wrong-pass"}, {"username": "nobody", "password": "password1"}} {
		r := do(t, "POST", s.base+"/api/v1/sessions", "", creds)
		if r.status != 401 || r.errCode(t) != "unauthenticated" {
			t.Fatalf("bad login: %d %s", r.status, r.body)
		}
	}
	r = do(t, "POST", s.base+"/api/v1/sessions", "", map[string]string{"username": "alice", "password": "password1"})
	if r.status != 201 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	var sess struct {
		Token     string    `json:"token"`
		ExpiresAt string    `json:"expires_at"`
		User      chat.User `json:"user"`
	}
	r.decode(t, &sess)
	if len(sess.Token) < 22 || sess.User.ID != alice.ID {
		t.Fatalf("session: %s", r.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, sess.ExpiresAt); err != nil {
		t.Fatalf("expires_at %q: %v", sess.ExpiresAt, err)
	}
	cookie := r.header.Get("Set-Cookie")
	if !strings.Contains(cookie, "chatd_session="+sess.Token) || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(strings.ToLower(cookie), "samesite=lax") {
		t.Fatalf("cookie: %q", cookie)
	}

	me := do(t, "GET", s.base+"/api/v1/users/me", sess.Token, nil)
	if me.status != 200 || !strings.Contains(string(me.body), `"username":"alice"`) {
		t.Fatalf("me: %d %s", me.status, me.body)
	}
	// The cookie alone authenticates GETs.
	me = do(t, "GET", s.base+"/api/v1/users/me", "", nil, "Cookie", "chatd_session="+sess.Token)
	if me.status != 200 {
		t.Fatalf("me by cookie: %d %s", me.status, me.body)
	}
	for _, tok := range []string{"", "garbage", strings.Repeat("x", 5000)} {
		if r := do(t, "GET", s.base+"/api/v1/users/me", tok, nil); r.status != 401 {
			t.Fatalf("token %q: %d", tok[:min(len(tok), 10)], r.status)
		}
	}

	// Logout closes the session's sockets and the token stops working.
	c := &client{t: t, base: s.base, token: sess.Token, user: sess.User}
	ws := c.dial("/api/v1/ws")
	ws.send(map[string]string{"type": "ping"})
	ws.next("pong")
	if r := c.do("DELETE", "/api/v1/sessions/current", nil); r.status != 204 {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := c.do("GET", "/api/v1/users/me", nil); r.status != 401 {
		t.Fatalf("token works after logout: %d", r.status)
	}
	if code := ws.waitClosed(); code != websocket.StatusPolicyViolation {
		t.Fatalf("socket of revoked session closed with %d", code)
	}
	if _, err := dialWS(s.base, "/api/v1/ws", sess.Token); err == nil {
		t.Fatal("revoked token opened a socket")
	}
}

func TestRoomsAndPrivacy(t *testing.T) {
	s := startServer(t, "", nil)
	owner, member, stranger := s.newUser(t, "own"), s.newUser(t, "mem"), s.newUser(t, "str")
	pub := owner.createRoom("lobby", false)
	priv := owner.createRoom("secret", true)
	if !priv.Private || priv.OwnerID != owner.user.ID || pub.Private {
		t.Fatalf("rooms: %+v %+v", pub, priv)
	}
	listIDs := func(c *client) map[chat.ID]bool {
		r := c.do("GET", "/api/v1/rooms", nil)
		var out struct{ Rooms []chat.Room }
		r.decode(t, &out)
		ids := map[chat.ID]bool{}
		for _, rm := range out.Rooms {
			ids[rm.ID] = true
		}
		return ids
	}
	if l := listIDs(stranger); !l[pub.ID] || l[priv.ID] {
		t.Fatalf("stranger's list: %v", l)
	}
	if l := listIDs(owner); !l[pub.ID] || !l[priv.ID] {
		t.Fatalf("owner's list: %v", l)
	}
	privPath := "/api/v1/rooms/" + priv.ID.String()
	owner.post(priv.ID, "the secret plan", "n1")

	// To a non-member the private room does not exist, on every path.
	notFound := []struct{ method, path string }{
		{"GET", privPath},
		{"PATCH", privPath},
		{"DELETE", privPath},
		{"GET", privPath + "/messages"},
		{"GET", privPath + "/history"},
		{"POST", privPath + "/messages"},
		{"POST", privPath + "/members"},
		{"GET", privPath + "/members"},
		{"GET", "/api/v1/search?q=secret&room_id=" + priv.ID.String()},
	}
	for _, p := range notFound {
		var body any
		switch {
		case strings.HasSuffix(p.path, "/messages") && p.method == "POST":
			body = map[string]string{"body": "hi"}
		case strings.HasSuffix(p.path, "/members") && p.method == "POST":
			body = map[string]string{"username": stranger.user.Username}
		case p.method == "PATCH":
			body = map[string]string{"name": "mine"}
		}
		if r := stranger.do(p.method, p.path, body); r.status != 404 || r.errCode(t) != "not_found" {
			t.Errorf("%s %s by stranger: %d %s", p.method, p.path, r.status, r.body)
		}
	}
	ws := stranger.dial("/api/v1/ws")
	if f := ws.join(priv.ID); f.Type != "error" || f.Code != "not_found" {
		t.Fatalf("stranger joined private room: %+v", f)
	}
	ws.send(map[string]string{"type": "send", "room_id": priv.ID.String(), "body": "x", "nonce": "s1"})
	if f := ws.next("error", "ack"); f.Code != "not_found" || f.Nonce != "s1" {
		t.Fatalf("stranger sent to private room: %+v", f)
	}

	// Owner-only edits.
	if r := member.do("PATCH", "/api/v1/rooms/"+pub.ID.String(), map[string]string{"name": "mine"}); r.status != 403 || r.errCode(t) != "forbidden" {
		t.Fatalf("non-owner rename: %d %s", r.status, r.body)
	}
	if r := member.do("DELETE", "/api/v1/rooms/"+pub.ID.String(), nil); r.status != 403 {
		t.Fatalf("non-owner delete: %d %s", r.status, r.body)
	}
	r := owner.do("PATCH", "/api/v1/rooms/"+pub.ID.String(), map[string]string{"name": "Lobby 2", "description": "the hall"})
	var renamed chat.Room
	r.decode(t, &renamed)
	if r.status != 200 || renamed.Name != "Lobby 2" || renamed.Description != "the hall" {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	for _, bad := range []map[string]any{{"name": ""}, {"name": strings.Repeat("n", 101)}, {"name": 7}} {
		if r := owner.do("PATCH", "/api/v1/rooms/"+pub.ID.String(), bad); r.status != 400 {
			t.Errorf("bad rename %v: %d %s", bad, r.status, r.body)
		}
	}

	// Membership: add, then the member reads; remove, then they are told.
	if r := owner.do("POST", privPath+"/members", map[string]string{"username": member.user.Username}); r.status != 204 {
		t.Fatalf("add member: %d %s", r.status, r.body)
	}
	if r := owner.do("POST", privPath+"/members", map[string]string{"username": "no-such-user"}); r.status != 404 {
		t.Fatalf("add unknown user: %d %s", r.status, r.body)
	}
	if r := member.do("GET", privPath+"/messages", nil); r.status != 200 || !strings.Contains(string(r.body), "the secret plan") {
		t.Fatalf("member reads: %d %s", r.status, r.body)
	}
	if r := member.do("POST", privPath+"/members", map[string]string{"username": stranger.user.Username}); r.status != 403 {
		t.Fatalf("member adds member: %d %s", r.status, r.body)
	}
	// Members see who is in the room, by ascending user ID, without
	// anyone's e-mail address.
	var page struct {
		Members   []chat.User `json:"members"`
		NextAfter *string     `json:"next_after"`
	}
	r = member.do("GET", privPath+"/members", nil)
	r.decode(t, &page)
	if r.status != 200 || len(page.Members) != 2 || page.NextAfter != nil || strings.Contains(string(r.body), "@") {
		t.Fatalf("members: %d %s", r.status, r.body)
	}
	want := []string{owner.user.Username, member.user.Username}
	if owner.user.ID > member.user.ID {
		want[0], want[1] = want[1], want[0]
	}
	if page.Members[0].Username != want[0] || page.Members[1].Username != want[1] {
		t.Fatalf("members %+v; want %v", page.Members, want)
	}
	r = member.do("GET", privPath+"/members?limit=1", nil)
	r.decode(t, &page)
	if r.status != 200 || len(page.Members) != 1 || page.NextAfter == nil || *page.NextAfter != page.Members[0].ID.String() {
		t.Fatalf("first page of 1: %d %s", r.status, r.body)
	}
	for _, bad := range []string{"?limit=0", "?limit=1000", "?after=x", "?after=-5", "?after=%ff%fe"} {
		if r := member.do("GET", privPath+"/members"+bad, nil); r.status != 400 || r.errCode(t) != "invalid" {
			t.Errorf("members%s: %d %s", bad, r.status, r.body)
		}
	}
	mws := member.dial("/api/v1/ws")
	if f := mws.join(priv.ID); f.Type != "joined" || len(f.Messages) != 1 {
		t.Fatalf("member join: %+v", f)
	}
	if r := owner.do("DELETE", privPath+"/members/"+member.user.ID.String(), nil); r.status != 204 {
		t.Fatalf("remove member: %d %s", r.status, r.body)
	}
	if f := mws.next("removed"); f.RoomID != priv.ID {
		t.Fatalf("removed frame: %+v", f)
	}
	if r := member.do("GET", privPath, nil); r.status != 404 {
		t.Fatalf("removed member still sees room: %d", r.status)
	}
	// A member may leave by themself.
	owner.do("POST", privPath+"/members", map[string]string{"username": member.user.Username})
	if r := member.do("DELETE", privPath+"/members/"+member.user.ID.String(), nil); r.status != 204 {
		t.Fatalf("leave: %d %s", r.status, r.body)
	}

	// Deleting a room tells its sockets.
	ows := owner.dial("/api/v1/ws")
	ows.join(pub.ID)
	if r := owner.do("DELETE", "/api/v1/rooms/"+pub.ID.String(), nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if f := ows.next("room_deleted"); f.RoomID != pub.ID {
		t.Fatalf("room_deleted: %+v", f)
	}
	if r := owner.do("GET", "/api/v1/rooms/"+pub.ID.String(), nil); r.status != 404 {
		t.Fatalf("deleted room: %d", r.status)
	}
	for _, p := range []string{"/api/v1/rooms/abc", "/api/v1/rooms/-5", "/api/v1/rooms/0", "/api/v1/rooms/99999999999999999999"} {
		if r := owner.do("GET", p, nil); r.status != 400 && r.status != 404 {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
}

func TestMessagesPagingHistorySearch(t *testing.T) {
	s := startServer(t, "", nil)
	a := s.newUser(t, "pager")
	room := a.createRoom("paging", false)
	path := "/api/v1/rooms/" + room.ID.String()
	weird := []string{"<img src=x onerror=alert(1)>", "emoji 🎉👩‍👩‍👧 and RTL שלום", "  padded  \n\ttabs\\ \"quotes\" ", strings.Repeat("é", 4000)}
	var sent []chat.Message
	for i := 0; i < 120; i++ {
		body := fmt.Sprintf("message number %d", i)
		if i < len(weird) {
			body = weird[i]
		}
		sent = append(sent, a.post(room.ID, body, fmt.Sprintf("n%d", i)))
	}
	for i, m := range sent {
		if i > 0 && m.ID <= sent[i-1].ID {
			t.Fatalf("IDs not increasing: %v then %v", sent[i-1].ID, m.ID)
		}
		if i < len(weird) && m.Body != weird[i] {
			t.Fatalf("body changed: %q -> %q", weird[i], m.Body)
		}
	}
	// Page back through everything: oldest first within a page, no gaps.
	var got []chat.Message
	before := ""
	for pages := 0; ; pages++ {
		q := path + "/messages?limit=50"
		if before != "" {
			q += "&before=" + before
		}
		r := a.do("GET", q, nil)
		var page struct {
			Messages   []chat.Message `json:"messages"`
			NextBefore *string        `json:"next_before"`
		}
		r.decode(t, &page)
		for i := 1; i < len(page.Messages); i++ {
			if page.Messages[i].ID <= page.Messages[i-1].ID {
				t.Fatal("page not oldest first")
			}
		}
		got = append(page.Messages, got...)
		if page.NextBefore == nil || *page.NextBefore == "" || pages > 5 {
			break
		}
		before = *page.NextBefore
	}
	if len(got) != len(sent) {
		t.Fatalf("paged %d messages, sent %d", len(got), len(sent))
	}
	for i := range got {
		if got[i].ID != sent[i].ID || got[i].Body != sent[i].Body || got[i].Username != a.user.Username {
			t.Fatalf("message %d: got %+v want %+v", i, got[i], sent[i])
		}
	}
	for _, q := range []string{"?limit=0", "?limit=201", "?limit=abc", "?before=xyz", "?before=-1"} {
		if r := a.do("GET", path+"/messages"+q, nil); r.status != 400 {
			t.Errorf("messages%s: %d %s", q, r.status, r.body)
		}
	}

	// Posting: validation.
	for _, b := range []any{
		map[string]string{"body": ""},
		map[string]string{"body": "   \n "},
		map[string]string{"body": strings.Repeat("x", 4001)},
		[]byte("{\"body\":\"bad \xff utf8\"}"),
		map[string]any{"body": 12},
	} {
		r := a.do("POST", path+"/messages", b)
		if r.status != 400 && r.status != 413 {
			t.Errorf("bad body %v: %d %s", b, r.status, r.body)
		}
	}

	// History: the search index trails the log; poll.
	var hist struct {
		Messages   []chat.Message `json:"messages"`
		NextCursor *string        `json:"next_cursor"`
	}
	eventually(t, "history to hold every message", func() bool {
		r := a.do("GET", path+"/history?limit=200", nil)
		r.decode(t, &hist)
		return len(hist.Messages) == len(sent)
	})
	from := sent[10].CreatedAt.Format(time.RFC3339Nano)
	to := sent[20].CreatedAt.Format(time.RFC3339Nano)
	var all []chat.Message
	cursor := ""
	for i := 0; i < 10; i++ {
		q := path + "/history?limit=4&from=" + from + "&to=" + to
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r := a.do("GET", q, nil)
		if r.status != 200 {
			t.Fatalf("history: %d %s", r.status, r.body)
		}
		r.decode(t, &hist)
		all = append(all, hist.Messages...)
		if hist.NextCursor == nil || *hist.NextCursor == "" {
			break
		}
		cursor = *hist.NextCursor
	}
	if len(all) != 10 || all[0].ID != sent[10].ID || all[9].ID != sent[19].ID {
		t.Fatalf("history range [10,20) returned %d messages", len(all))
	}
	if r := a.do("GET", path+"/history?from=yesterday", nil); r.status != 400 {
		t.Errorf("bad from: %d", r.status)
	}

	// Search.
	type hits struct {
		Hits []struct {
			Message   chat.Message `json:"message"`
			Highlight string       `json:"highlight"`
		} `json:"hits"`
		Total      int64   `json:"total"`
		NextCursor *string `json:"next_cursor"`
	}
	var h hits
	r := a.do("GET", "/api/v1/search?q=onerror", nil)
	r.decode(t, &h)
	if len(h.Hits) != 1 || h.Hits[0].Message.ID != sent[0].ID {
		t.Fatalf("search onerror: %s", r.body)
	}
	if hl := h.Hits[0].Highlight; strings.Contains(hl, "<img") || !strings.Contains(hl, "<mark>onerror</mark>") {
		t.Fatalf("highlight not escaped or not marked: %q", hl)
	}
	r = a.do("GET", "/api/v1/search?q=%22number+11%22&room_id="+room.ID.String(), nil)
	r.decode(t, &h)
	if len(h.Hits) != 1 || h.Hits[0].Message.Body != "message number 11" {
		t.Fatalf("phrase search: %s", r.body)
	}
	r = a.do("GET", "/api/v1/search?q=numb*&limit=200", nil)
	r.decode(t, &h)
	if h.Total != int64(len(sent)-len(weird)) {
		t.Fatalf("prefix search total %d, want %d", h.Total, len(sent)-len(weird))
	}
	for _, q := range []string{"", "q=", "q=" + strings.Repeat("a", 600), "q=x&limit=999", "q=x&room_id=abc", "q=x&from=nope"} {
		if r := a.do("GET", "/api/v1/search?"+q, nil); r.status != 400 {
			t.Errorf("search ?%s: %d %s", q[:min(len(q), 30)], r.status, r.body[:min(len(r.body), 200)])
		}
	}
	for _, q := range []string{"NEAR(a b)", "\"unbalanced", "a AND OR NOT", "col:val", "*", "-x", "^start", "'; drop table messages; --"} {
		if r := a.do("GET", "/api/v1/search?q="+strings.ReplaceAll(q, " ", "+"), nil); r.status != 200 && r.status != 400 {
			t.Errorf("hostile search %q: %d %s", q, r.status, r.body)
		}
	}
}

func TestWebSocketFlow(t *testing.T) {
	s := startServer(t, "", nil)
	a, b := s.newUser(t, "wsa"), s.newUser(t, "wsb")
	room := a.createRoom("live", false)
	var sent []chat.Message
	for i := 0; i < 15; i++ {
		sent = append(sent, a.post(room.ID, fmt.Sprintf("old %d", i), ""))
	}
	wa := a.dial("/api/v1/ws")
	j := wa.join(room.ID)
	if j.Type != "joined" || len(j.Messages) != 10 || j.Messages[0].ID != sent[5].ID || j.Messages[9].ID != sent[14].ID {
		t.Fatalf("joined should carry the latest 10 oldest first: %+v", j)
	}
	// The per-room path joins at once.
	wb := b.dial("/api/v1/rooms/" + room.ID.String() + "/ws")
	if j := wb.next("joined"); j.RoomID != room.ID || len(j.Messages) != 10 {
		t.Fatalf("room ws: %+v", j)
	}

	body := "hello <b>world</b> 🎉"
	wa.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": body, "nonce": "abc"})
	// API.md: the sender gets its ack first, then the room's message frame.
	ack := wa.next("ack", "message")
	if ack.Type != "ack" {
		t.Fatalf("sender got %q before its ack", ack.Type)
	}
	if ack.Nonce != "abc" || ack.Message == nil || ack.Message.Body != body || ack.Message.ID <= sent[14].ID {
		t.Fatalf("ack: %+v", ack)
	}
	for _, w := range []*wsConn{wa, wb} {
		f := w.next("message")
		if f.Message.ID != ack.Message.ID || f.Message.Body != body || f.Message.Username != a.user.Username {
			t.Fatalf("message frame: %+v", f)
		}
	}
	// A repeated nonce is acked with the first message and not stored twice.
	wa.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": body, "nonce": "abc"})
	if again := wa.next("ack"); again.Message.ID != ack.Message.ID {
		t.Fatalf("repeated nonce stored again: %v vs %v", again.Message.ID, ack.Message.ID)
	}
	r := a.do("GET", "/api/v1/rooms/"+room.ID.String()+"/messages?limit=5", nil)
	if n := strings.Count(string(r.body), ack.Message.ID.String()); n != 1 {
		t.Fatalf("message with repeated nonce appears %d times: %s", n, r.body)
	}

	// Typing reaches others, not self.
	wb.send(map[string]string{"type": "typing", "room_id": room.ID.String()})
	if f := wa.next("typing"); f.UserID != b.user.ID || f.Username != b.user.Username || f.RoomID != room.ID {
		t.Fatalf("typing: %+v", f)
	}
	// The typist gets no echo of its own typing: the next frame it sees
	// after pinging is the pong.
	wb.send(map[string]string{"type": "ping"})
	if f := wb.next("pong", "typing"); f.Type != "pong" {
		t.Fatalf("typist got its own typing frame: %+v", f)
	}

	// Resume with since: b drops, a sends 3, b rejoins with since = last seen.
	lastSeen := ack.Message.ID
	wb.c.Close(websocket.StatusNormalClosure, "")
	var missed []chat.ID
	for i := 0; i < 3; i++ {
		missed = append(missed, a.post(room.ID, fmt.Sprintf("while away %d", i), "").ID)
	}
	wb2 := b.dial("/api/v1/ws")
	wb2.send(map[string]any{"type": "join", "room_id": room.ID.String(), "since": lastSeen.String()})
	j = wb2.next("joined")
	if len(j.Messages) != 3 || j.Messages[0].ID != missed[0] || j.Messages[2].ID != missed[2] || j.Truncated {
		t.Fatalf("since join: %+v", j)
	}
	// Leave stops delivery.
	wb2.send(map[string]string{"type": "leave", "room_id": room.ID.String()})
	if f := wb2.next("left"); f.RoomID != room.ID {
		t.Fatalf("left: %+v", f)
	}

	// Errors answer sends with their nonce; bad frames do not close at once.
	wa.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "", "nonce": "empty"})
	if f := wa.next("error"); f.Code != "invalid" || f.Nonce != "empty" {
		t.Fatalf("empty body: %+v", f)
	}
	wa.send(map[string]string{"type": "send", "room_id": "12345", "body": "x", "nonce": "nr"})
	if f := wa.next("error"); f.Code != "not_found" || f.Nonce != "nr" {
		t.Fatalf("missing room: %+v", f)
	}
	for _, bad := range []string{"not json", "[1,2]", `{"type":"dance"}`, `{"type":"join","room_id":"abc"}`, `{"type":"join"}`, `"str"`, `{"type":"send","room_id":5,"body":{}}`} {
		wa.sendRaw([]byte(bad))
		if f := wa.next("error"); f.Code != "invalid" {
			t.Fatalf("bad frame %q: %+v", bad, f)
		}
	}
	wa.send(map[string]string{"type": "ping"})
	wa.next("pong")
}

func TestWebSocketAuthAndLimits(t *testing.T) {
	s := startServer(t, "", map[string]string{"gateway.max_bad_frames": "3", "limits.send_rate": "2", "limits.send_burst": "2", "limits.send_period": "1m"})
	a := s.newUser(t, "lim")
	room := a.createRoom("limits", false)
	if _, err := dialWS(s.base, "/api/v1/ws", ""); err == nil {
		t.Fatal("unauthenticated socket accepted")
	}
	if _, err := dialWS(s.base, "/api/v1/ws", "bogus"); err == nil {
		t.Fatal("bogus token accepted")
	}
	// ?token= works for browsers that cannot set headers.
	ws, err := dialWS(s.base, "/api/v1/ws?token="+a.token, "")
	if err != nil {
		t.Fatalf("?token=: %v", err)
	}
	ws.CloseNow()
	// Another origin is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + a.token}, "Origin": {"https://evil.example"}}
	if c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.base, "http")+"/api/v1/ws", &websocket.DialOptions{HTTPHeader: h}); err == nil {
		c.CloseNow()
		t.Fatal("cross-origin socket accepted")
	}

	// Rate limit: REST and WebSocket share the user's budget.
	a.post(room.ID, "one", "")
	w := a.dial("/api/v1/ws")
	w.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "two", "nonce": "2"})
	w.next("ack")
	w.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "three", "nonce": "3"})
	if f := w.next("error", "ack"); f.Code != "rate_limited" || f.Nonce != "3" || f.RetryAfterMS <= 0 {
		t.Fatalf("ws rate limit: %+v", f)
	}
	r := a.do("POST", "/api/v1/rooms/"+room.ID.String()+"/messages", map[string]string{"body": "four"})
	if r.status != 429 || r.errCode(t) != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("rest rate limit: %d %v %s", r.status, r.header, r.body)
	}

	// Too much garbage closes with 1008; an oversized frame with 1009.
	// The server may close after the third bad frame, before the client
	// has written the rest: a write that fails then is expected.
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.c.Write(ctx, websocket.MessageText, []byte("garbage"))
		cancel()
		if err != nil {
			if i < 3 {
				t.Fatalf("write of bad frame %d: %v", i+1, err)
			}
			break
		}
	}
	if code := w.waitClosed(); code != websocket.StatusPolicyViolation {
		t.Fatalf("garbage close code %d", code)
	}
	w2 := a.dial("/api/v1/ws")
	big, _ := json.Marshal(map[string]string{"type": "send", "room_id": room.ID.String(), "body": strings.Repeat("x", 20000)})
	w2.sendRaw(big)
	if code := w2.waitClosed(); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversized frame close code %d", code)
	}
}

// A reader that stops reading must be cut off (1013) without holding up the
// room: a healthy reader in the same room still gets every message.
func TestSlowReaderDoesNotStallRoom(t *testing.T) {
	s := startServer(t, "", map[string]string{"gateway.send_queue": "64"})
	a, slow := s.newUser(t, "fast"), s.newUser(t, "slow")
	room := a.createRoom("busy", false)

	// The slow client joins and then never reads its socket again.
	sc, err := dialWS(s.base, "/api/v1/ws", slow.token)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.CloseNow()
	j, _ := json.Marshal(map[string]string{"type": "join", "room_id": room.ID.String()})
	if err := sc.Write(context.Background(), websocket.MessageText, j); err != nil {
		t.Fatal(err)
	}
	fast := a.dial("/api/v1/ws")
	fast.join(room.ID)
	const n = 3000
	body := strings.Repeat("z", 3000) // big frames fill the slow socket's TCP buffers quickly
	// Sends go in windows of 20 so the healthy client itself keeps up.
	seen := 0
	for i := 0; i < n; i += 20 {
		for k := i; k < i+20; k++ {
			fast.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": fmt.Sprintf("%d %s", k, body), "nonce": fmt.Sprint(k)})
		}
		for seen < i+20 {
			f := fast.next("message")
			if !strings.HasPrefix(f.Message.Body, fmt.Sprint(seen)+" ") {
				t.Fatalf("message %d out of order: %.20q", seen, f.Message.Body)
			}
			seen++
		}
	}
	// The slow socket was closed with 1013 (try again later). The close
	// frame waits behind everything queued before it; when the client
	// does not read for longer than the server's write timeout (a slow
	// race build gets there), the server drops the connection without it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var code websocket.StatusCode = -1
	var readErr error
	for {
		if _, _, readErr = sc.Read(ctx); readErr != nil {
			code = websocket.CloseStatus(readErr)
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the slow reader was never disconnected")
	}
	if code != websocket.StatusTryAgainLater && code != -1 {
		t.Fatalf("slow reader closed with %d, want 1013", code)
	}
	m := do(t, "GET", s.base+"/metrics", "", nil)
	if !regexp.MustCompile(`(?m)^chatd_gateway_slow_consumer_disconnects_total [1-9]`).Match(m.body) {
		t.Fatalf("slow reader ended with %v, and no slow-consumer disconnect was counted", readErr)
	}
}

func TestOpenAPIAndUI(t *testing.T) {
	s := startServer(t, "", nil)
	r := do(t, "GET", s.base+"/api/v1/openapi.json", "", nil)
	var doc map[string]any
	r.decode(t, &doc)
	if r.status != 200 || doc["openapi"] == nil || doc["paths"] == nil {
		t.Fatalf("openapi: %d", r.status)
	}
	r = do(t, "GET", s.base+"/", "", nil)
	if r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), "text/html") || r.header.Get("Content-Security-Policy") == "" {
		t.Fatalf("ui: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", s.base+"/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
	if r := do(t, "GET", s.base+"/readyz", "", nil); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
}
