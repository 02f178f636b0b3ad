package distributed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/chat"
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

// user is one logged-in account talking to one gateway.
type user struct {
	t     *testing.T
	base  string
	token string
	me    chat.User
}

func call(method, u, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

var userSeq atomic.Int64

// register creates an account through the gateway at base and logs in.
func register(t *testing.T, base, prefix string) *user {
	t.Helper()
	name := fmt.Sprintf("%s%d_%d", prefix, time.Now().UnixNano()%1_000_000, userSeq.Add(1))
	st, b, err := call("POST", base+"/api/v1/users", "", map[string]string{"username": name, "password": "correct horse"})
	if err != nil || st != 201 {
		t.Fatalf("register %s: %d %s %v", name, st, b, err)
	}
	st, b, err = call("POST", base+"/api/v1/sessions", "", map[string]string{"username": name, "password": "correct horse"})
	if err != nil || st != 201 {
		t.Fatalf("login %s: %d %s %v", name, st, b, err)
	}
	var out struct {
		Token string    `json:"token"`
		User  chat.User `json:"user"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &user{t: t, base: base, token: out.Token, me: out.User}
}

// via returns the same session talking to another gateway.
func (u *user) via(base string) *user {
	c := *u
	c.base = base
	return &c
}

func (u *user) createRoom(name string) chat.Room {
	u.t.Helper()
	st, b, err := call("POST", u.base+"/api/v1/rooms", u.token, map[string]any{"name": name})
	if err != nil || st != 201 {
		u.t.Fatalf("create room: %d %s %v", st, b, err)
	}
	var r chat.Room
	if err := json.Unmarshal(b, &r); err != nil {
		u.t.Fatal(err)
	}
	return r
}

// messages pages GET /rooms/{id}/messages back to the first message.
func (u *user) messages(room chat.ID) ([]chat.Message, error) {
	var all []chat.Message
	before := ""
	for range 10_000 {
		st, b, err := call("GET", u.base+"/api/v1/rooms/"+room.String()+"/messages?limit=200"+before, u.token, nil)
		if err != nil {
			return nil, err
		}
		if st != 200 {
			return nil, fmt.Errorf("GET messages: %d %s", st, b)
		}
		var page struct {
			Messages   []chat.Message `json:"messages"`
			NextBefore *string        `json:"next_before"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		all = append(page.Messages, all...)
		if page.NextBefore == nil {
			return all, nil
		}
		before = "&before=" + *page.NextBefore
	}
	return nil, fmt.Errorf("GET messages: more than 10000 pages")
}

// search pages GET /search for q in room and returns the total and hits.
func (u *user) search(q string, room chat.ID) (int, []chat.Message, error) {
	var hits []chat.Message
	total := 0
	cursor := ""
	for range 10_000 {
		v := url.Values{"q": {q}, "room_id": {room.String()}, "limit": {"200"}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		st, b, err := call("GET", u.base+"/api/v1/search?"+v.Encode(), u.token, nil)
		if err != nil {
			return 0, nil, err
		}
		if st != 200 {
			return 0, nil, fmt.Errorf("GET search: %d %s", st, b)
		}
		var page struct {
			Hits []struct {
				Message chat.Message `json:"message"`
			} `json:"hits"`
			Total      int     `json:"total"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return 0, nil, err
		}
		total = page.Total
		for _, h := range page.Hits {
			hits = append(hits, h.Message)
		}
		if page.NextCursor == nil || *page.NextCursor == "" || len(page.Hits) == 0 {
			return total, hits, nil
		}
		cursor = *page.NextCursor
	}
	return 0, nil, fmt.Errorf("GET search: more than 10000 pages")
}

// frame is any server frame.
type frame struct {
	Type     string          `json:"type"`
	RoomID   chat.ID         `json:"room_id"`
	Nonce    string          `json:"nonce"`
	Raw      json.RawMessage `json:"message"`
	Messages []chat.Message  `json:"messages"`
	Code     string          `json:"code"`
}

// message decodes the message of an ack or message frame.
func (f frame) message() (chat.Message, error) {
	var m chat.Message
	err := json.Unmarshal(f.Raw, &m)
	return m, err
}

// wsConn is a WebSocket whose frames go to handle, on the reader goroutine.
type wsConn struct {
	c      *websocket.Conn
	closed chan struct{}
	err    error // why the reader stopped, once closed is closed
}

func (u *user) dialWS(handle func(frame)) *wsConn {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + u.token}}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u.base, "http")+"/api/v1/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		u.t.Fatalf("dial websocket on %s: %v", u.base, err)
	}
	c.SetReadLimit(1 << 24)
	w := &wsConn{c: c, closed: make(chan struct{})}
	go func() {
		defer close(w.closed)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				w.err = err
				return
			}
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				w.err = fmt.Errorf("bad frame %q: %w", b, err)
				return
			}
			handle(f)
		}
	}()
	u.t.Cleanup(func() { c.CloseNow() })
	return w
}

func (w *wsConn) send(v any) error {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

// frames collects a socket's frames in a channel, for scripted exchanges.
type frames chan frame

func (ch frames) handle(f frame) {
	select {
	case ch <- f:
	default: // the test stopped reading; drop rather than block the socket
	}
}

// next waits for a frame of one of the given types.
func (ch frames) next(t *testing.T, within time.Duration, match func(frame) bool) frame {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f := <-ch:
			if match(f) {
				return f
			}
		case <-deadline:
			t.Fatalf("no matching frame within %s", within)
		}
	}
}

// sender keeps sends in flight on one socket (at most window unanswered)
// and records every answer: acked messages by ID, failures by code.
type sender struct {
	name, word string
	room       chat.ID
	ws         *wsConn
	window     chan struct{}
	pace       time.Duration

	mu        sync.Mutex
	sent      map[string]string // nonce -> body, every send written
	pending   map[string]bool   // nonces not answered yet
	acked     map[chat.ID]string
	ackedAt   []time.Time
	failures  map[string]int // error code -> count
	failed    []string       // nonces of failed sends, in order
	oddAnswer []string       // answers that contradict what was sent
}

func newSender(u *user, name, word string, room chat.ID, window int, pace time.Duration) *sender {
	s := &sender{name: name, word: word, room: room, window: make(chan struct{}, window), pace: pace,
		sent: map[string]string{}, pending: map[string]bool{}, acked: map[chat.ID]string{}, failures: map[string]int{}}
	s.ws = u.dialWS(s.onFrame)
	return s
}

func (s *sender) onFrame(f frame) {
	if f.Type != "ack" && f.Type != "error" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending[f.Nonce] {
		if f.Type == "error" && f.Nonce == "" {
			s.failures[f.Code]++
		}
		return
	}
	delete(s.pending, f.Nonce)
	<-s.window
	if f.Type == "error" {
		s.failures[f.Code]++
		s.failed = append(s.failed, f.Nonce)
		return
	}
	m, err := f.message()
	if err != nil || m.Body != s.sent[f.Nonce] || m.RoomID != s.room {
		s.oddAnswer = append(s.oddAnswer, fmt.Sprintf("nonce %s acked with %+v (%v)", f.Nonce, m, err))
		return
	}
	if prev, dup := s.acked[m.ID]; dup {
		s.oddAnswer = append(s.oddAnswer, fmt.Sprintf("id %s acked twice (%q, %q)", m.ID, prev, m.Body))
	}
	s.acked[m.ID] = m.Body
	s.ackedAt = append(s.ackedAt, time.Now())
}

// run sends until ctx ends, max sends are written, or the window stays
// full for 60s (every send is answered within ingest.timeout, so that
// means the socket or the gateway is stuck).
func (s *sender) run(ctx context.Context, limit int) error {
	for i := range limit {
		select {
		case <-ctx.Done():
			return nil
		case s.window <- struct{}{}:
		case <-s.ws.closed:
			return fmt.Errorf("%s: socket closed: %v", s.name, s.ws.err)
		case <-time.After(60 * time.Second):
			return fmt.Errorf("%s: %d sends unanswered for 60s", s.name, cap(s.window))
		}
		if err := s.write(fmt.Sprintf("%s-%d", s.name, i), fmt.Sprintf("%s %s m%d", s.word, s.name, i)); err != nil {
			return err
		}
		if s.pace > 0 {
			time.Sleep(s.pace)
		}
	}
	return nil
}

// write sends one message; the caller holds a window slot.
func (s *sender) write(nonce, body string) error {
	s.mu.Lock()
	s.sent[nonce] = body
	s.pending[nonce] = true
	s.mu.Unlock()
	if err := s.ws.send(map[string]any{"type": "send", "room_id": s.room.String(), "body": body, "nonce": nonce}); err != nil {
		return fmt.Errorf("%s: write: %w", s.name, err)
	}
	return nil
}

// retryFailed sends every failed send again with its nonce and body, as
// the unavailable error tells a client to, and returns how many it resent.
func (s *sender) retryFailed() (int, error) {
	s.mu.Lock()
	failed := s.failed
	s.failed = nil
	bodies := make([]string, len(failed))
	for i, n := range failed {
		bodies[i] = s.sent[n]
	}
	s.mu.Unlock()
	for i, nonce := range failed {
		select {
		case s.window <- struct{}{}:
		case <-s.ws.closed:
			return i, fmt.Errorf("%s: socket closed: %v", s.name, s.ws.err)
		case <-time.After(60 * time.Second):
			return i, fmt.Errorf("%s: %d sends unanswered for 60s", s.name, cap(s.window))
		}
		if err := s.write(nonce, bodies[i]); err != nil {
			return i, err
		}
	}
	return len(failed), nil
}

// drain waits until every written send is answered, up to within.
func (s *sender) drain(within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *sender) ackCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// acksBetween counts acks received in [from, to).
func (s *sender) acksBetween(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.ackedAt {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// firstAckAfter returns the time of the first ack at or after t.
func (s *sender) firstAckAfter(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.ackedAt {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// load is several senders into one room.
type load []*sender

// newLoad opens perUser sockets for each of the users, all sending into room.
func newLoad(users []*user, perUser int, word string, room chat.ID, window int, pace time.Duration) load {
	var l load
	for i, u := range users {
		for j := range perUser {
			l = append(l, newSender(u, fmt.Sprintf("u%ds%d", i, j), word, room, window, pace))
		}
	}
	return l
}

func (l load) acks() int {
	n := 0
	for _, s := range l {
		n += s.ackCount()
	}
	return n
}

func (l load) acksBetween(from, to time.Time) int {
	n := 0
	for _, s := range l {
		n += s.acksBetween(from, to)
	}
	return n
}

func (l load) firstAckAfter(t time.Time) (time.Time, bool) {
	var first time.Time
	for _, s := range l {
		if at, ok := s.firstAckAfter(t); ok && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// start runs every sender; stop ends them and waits for their answers.
func (l load) start(t *testing.T, limit int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(l))
	for _, s := range l {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx, limit); err != nil {
				errs <- err
			}
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("sender: %v", err)
			}
			for _, s := range l {
				if n := s.drain(30 * time.Second); n > 0 {
					t.Errorf("%s: %d sends still unanswered 30s after the last one", s.name, n)
				}
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// result sums what the senders saw.
type result struct {
	sent     map[string]bool    // every body written
	acked    map[chat.ID]string // id -> body
	failures map[string]int
	odd      []string
}

func (l load) result() result {
	r := result{sent: map[string]bool{}, acked: map[chat.ID]string{}, failures: map[string]int{}}
	for _, s := range l {
		s.mu.Lock()
		for _, b := range s.sent {
			r.sent[b] = true
		}
		for id, b := range s.acked {
			r.acked[id] = b
		}
		for c, n := range s.failures {
			r.failures[c] += n
		}
		r.odd = append(r.odd, s.oddAnswer...)
		s.mu.Unlock()
	}
	return r
}

// check compares what a reader returned with what was acked: every acked
// message present with its body, no ID and no body twice, nothing that was
// never sent. It returns a description of the first problems, or "".
func (r result) check(got []chat.Message) (missing int, problem string) {
	var probs []string
	byID := map[chat.ID]int{}
	byBody := map[string]int{}
	for _, m := range got {
		byID[m.ID]++
		byBody[m.Body]++
	}
	for id, n := range byID {
		if n > 1 && len(probs) < 5 {
			probs = append(probs, fmt.Sprintf("id %s returned %d times", id, n))
		}
	}
	for b, n := range byBody {
		if n > 1 && len(probs) < 10 {
			probs = append(probs, fmt.Sprintf("body %q stored %d times", b, n))
		}
	}
	for _, m := range got {
		if !r.sent[m.Body] && len(probs) < 15 {
			probs = append(probs, fmt.Sprintf("message %s %q was never sent", m.ID, m.Body))
		}
		if want, ok := r.acked[m.ID]; ok && want != m.Body && len(probs) < 15 {
			probs = append(probs, fmt.Sprintf("message %s has body %q, acked as %q", m.ID, m.Body, want))
		}
	}
	for id := range r.acked {
		if byID[id] == 0 {
			missing++
		}
	}
	return missing, strings.Join(probs, "; ")
}
