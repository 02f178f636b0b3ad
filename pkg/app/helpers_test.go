package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/config"
)

// server is a whole chatd process, in this test process, on port 0.
type server struct {
	t    testing.TB
	m    *app.Main
	base string
	stop func()
}

// startServer runs chatd with defaults, a temp data dir (or dataDir) and the
// given key=value settings.
func startServer(t testing.TB, dataDir string, sets map[string]string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	all := map[string]string{"data_dir": dataDir, "http.addr": "127.0.0.1:0", "limits.send_rate": "0", "limits.login_rate": "0"}
	for k, v := range sets {
		all[k] = v
	}
	cfg, err := config.Load("", nil, all)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("CHATD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	m := app.New(cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once atomic.Bool
	s := &server{t: t, m: m, base: "http://" + m.Addr()}
	s.stop = func() {
		if once.Swap(true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop within 30s")
		}
		if err := m.Close(); err != nil {
			t.Logf("close: %v", err)
		}
	}
	t.Cleanup(s.stop)
	return s
}

// client is an API client holding one session.
type client struct {
	t     testing.TB
	base  string
	token string
	user  chat.User
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (r resp) errCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Error.Code
}

func do(t testing.TB, method, url, token string, body any, header ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

var userSeq atomic.Int64

// newUser registers and logs in a fresh user.
func (s *server) newUser(t testing.TB, prefix string) *client {
	t.Helper()
	name := fmt.Sprintf("%s%d_%d", prefix, time.Now().UnixNano()%1_000_000, userSeq.Add(1))
	r := do(t, "POST", s.base+"/api/v1/users", "", map[string]string{"username": name, "password": "correct horse", "email": name + "@example.com"})
	if r.status != 201 {
		t.Fatalf("register %s: %d %s", name, r.status, r.body)
	}
	return s.login(t, name, "correct horse")
}

func (s *server) login(t testing.TB, name, password string) *client {
	t.Helper()
	r := do(t, "POST", s.base+"/api/v1/sessions", "", map[string]string{"username": name, "password": password})
	if r.status != 201 {
		t.Fatalf("login %s: %d %s", name, r.status, r.body)
	}
	var out struct {
		Token string    `json:"token"`
		User  chat.User `json:"user"`
	}
	r.decode(t, &out)
	return &client{t: t, base: s.base, token: out.Token, user: out.User}
}

func (c *client) do(method, path string, body any) resp {
	c.t.Helper()
	return do(c.t, method, c.base+path, c.token, body)
}

func (c *client) createRoom(name string, private bool) chat.Room {
	c.t.Helper()
	r := c.do("POST", "/api/v1/rooms", map[string]any{"name": name, "private": private})
	if r.status != 201 {
		c.t.Fatalf("create room: %d %s", r.status, r.body)
	}
	var room chat.Room
	r.decode(c.t, &room)
	return room
}

func (c *client) post(room chat.ID, body, nonce string) chat.Message {
	c.t.Helper()
	r := c.do("POST", "/api/v1/rooms/"+room.String()+"/messages", map[string]string{"body": body, "nonce": nonce})
	if r.status != 201 {
		c.t.Fatalf("post: %d %s", r.status, r.body)
	}
	var m chat.Message
	r.decode(c.t, &m)
	return m
}

// frame is any server frame.
type frame struct {
	Type         string          `json:"type"`
	RoomID       chat.ID         `json:"room_id"`
	Nonce        string          `json:"nonce"`
	Message      *chat.Message   `json:"-"` // message, ack
	ErrMessage   string          `json:"-"` // error
	RawMessage   json.RawMessage `json:"message"`
	Messages     []chat.Message  `json:"messages"`
	Truncated    bool            `json:"truncated"`
	Code         string          `json:"code"`
	UserID       chat.ID         `json:"user_id"`
	Username     string          `json:"username"`
	RetryAfterMS int64           `json:"retry_after_ms"`
}

type wsConn struct {
	t  testing.TB
	c  *websocket.Conn
	in chan frame
	// closed receives the close error once the connection ends.
	closed chan error
}

func (c *client) dial(path string) *wsConn {
	c.t.Helper()
	ws, err := dialWS(c.base, path, c.token)
	if err != nil {
		c.t.Fatalf("dial %s: %v", path, err)
	}
	return wrapWS(c.t, ws)
}

func dialWS(base, path, token string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		ws.SetReadLimit(1 << 24)
	}
	return ws, err
}

func wrapWS(t testing.TB, ws *websocket.Conn) *wsConn {
	w := &wsConn{t: t, c: ws, in: make(chan frame, 4096), closed: make(chan error, 1)}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				w.closed <- err
				close(w.in)
				return
			}
			var f frame
			err = json.Unmarshal(b, &f)
			if err == nil && len(f.RawMessage) > 0 {
				// "message" is the message object in message and ack
				// frames, and the text of an error frame.
				if f.Type == "error" {
					err = json.Unmarshal(f.RawMessage, &f.ErrMessage)
				} else {
					f.Message = new(chat.Message)
					err = json.Unmarshal(f.RawMessage, f.Message)
				}
			}
			if err != nil {
				t.Errorf("bad server frame %q: %v", b, err)
				continue
			}
			w.in <- f
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	return w
}

func (w *wsConn) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	w.sendRaw(b)
}

func (w *wsConn) sendRaw(b []byte) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("ws write: %v", err)
	}
}

// next waits for the next frame of one of the given types, skipping others.
func (w *wsConn) next(types ...string) frame {
	w.t.Helper()
	deadline := time.After(15 * time.Second)
	var skipped []string
	for {
		select {
		case f, ok := <-w.in:
			if !ok {
				w.t.Fatalf("connection closed while waiting for %v (skipped %v)", types, skipped)
			}
			for _, ty := range types {
				if f.Type == ty {
					return f
				}
			}
			desc := f.Type
			if f.Message != nil {
				desc += " " + f.Message.ID.String()
			}
			skipped = append(skipped, desc)
		case <-deadline:
			w.t.Fatalf("no %v frame within 15s (skipped %v)", types, skipped)
		}
	}
}

func (w *wsConn) join(room chat.ID) frame {
	w.t.Helper()
	w.send(map[string]any{"type": "join", "room_id": room.String()})
	return w.next("joined", "error")
}

// waitClosed returns the close status once the server closes the socket.
func (w *wsConn) waitClosed() websocket.StatusCode {
	w.t.Helper()
	for {
		select {
		case _, ok := <-w.in:
			if !ok {
				err := <-w.closed
				return websocket.CloseStatus(err)
			}
		case <-time.After(20 * time.Second):
			w.t.Fatal("socket not closed within 20s")
		}
	}
}

// eventually polls f until it returns true or the deadline passes; for
// eventually consistent reads (the store and index trail the log).
func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
