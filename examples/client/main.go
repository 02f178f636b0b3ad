// Command client is a minimal chatd client: it logs in, joins a room over
// the WebSocket, prints the room's messages and sends each line read from
// standard input. It reconnects with "since" after a dropped connection, so
// it misses nothing.
//
//	go run ./examples/client -url http://localhost:8080 -user ann -password 'correct horse' -register -room general
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

type message struct {
	ID        string    `json:"id"`
	RoomID    string    `json:"room_id"`
	Username  string    `json:"username"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// frame is every frame this client reads or writes; unused fields stay empty.
type frame struct {
	Type     string    `json:"type"`
	RoomID   string    `json:"room_id,omitempty"`
	Since    string    `json:"since,omitempty"`
	Body     string    `json:"body,omitempty"`
	Nonce    string    `json:"nonce,omitempty"`
	Message  *message  `json:"message,omitempty"`
	Messages []message `json:"messages,omitempty"`
	Code     string    `json:"code,omitempty"`
	Text     string    `json:"-"` // an error frame's "message"
}

// UnmarshalJSON reads "message", which is an object in message and ack
// frames and a string in error frames.
func (f *frame) UnmarshalJSON(b []byte) error {
	type plain frame
	var raw struct {
		plain
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*f = frame(raw.plain)
	if len(raw.Message) > 0 && raw.Message[0] == '{' {
		f.Message = new(message)
		return json.Unmarshal(raw.Message, f.Message)
	}
	if len(raw.Message) > 0 {
		return json.Unmarshal(raw.Message, &f.Text)
	}
	return nil
}

func main() {
	base := flag.String("url", "http://localhost:8080", "chatd base URL")
	username := flag.String("user", "", "username")
	password := flag.String("password", "", "password")
	register := flag.Bool("register", false, "create the account first (an existing one is fine)")
	roomArg := flag.String("room", "general", "room name (created if missing) or numeric room ID")
	flag.Parse()
	if *username == "" || *password == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	api := &client{base: strings.TrimSuffix(*base, "/") + "/api/v1", http: &http.Client{Timeout: 15 * time.Second}}
	if *register {
		err := api.do(ctx, "POST", "/users", map[string]string{"username": *username, "password": *password}, nil)
		if err != nil && !strings.Contains(err.Error(), "conflict") {
			log.Fatalf("register: %v", err)
		}
	}
	var session struct{ Token string }
	if err := api.do(ctx, "POST", "/sessions", map[string]string{"username": *username, "password": *password}, &session); err != nil {
		log.Fatalf("login: %v", err)
	}
	api.token = session.Token
	roomID, err := api.room(ctx, *roomArg)
	if err != nil {
		log.Fatalf("room: %v", err)
	}

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				lines <- line
			}
		}
		stop() // end of input: quit
	}()

	var since string // last message seen, for a gap-free rejoin
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := api.chat(ctx, roomID, &since, lines)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second // it was up a while: a fresh failure
		}
		log.Printf("disconnected: %v; reconnecting in %s", err, backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

type client struct {
	base  string
	token string
	http  *http.Client
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s %s: %s: %s %s", method, path, resp.Status, e.Error.Code, e.Error.Message)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// room returns the ID of the room named arg, creating it if there is none;
// a numeric arg is taken as an ID.
func (c *client) room(ctx context.Context, arg string) (string, error) {
	if strings.Trim(arg, "0123456789") == "" {
		return arg, nil
	}
	var list struct {
		Rooms []struct{ ID, Name string }
	}
	if err := c.do(ctx, "GET", "/rooms", nil, &list); err != nil {
		return "", err
	}
	for _, r := range list.Rooms {
		if r.Name == arg {
			return r.ID, nil
		}
	}
	var created struct{ ID string }
	if err := c.do(ctx, "POST", "/rooms", map[string]string{"name": arg}, &created); err != nil {
		return "", err
	}
	log.Printf("created room %s (%s)", arg, created.ID)
	return created.ID, nil
}

// chat runs one WebSocket connection: join (resuming after *since), then
// print what arrives and send what is typed, until the connection or ctx
// ends.
func (c *client) chat(ctx context.Context, roomID string, since *string, lines <-chan string) error {
	u, err := url.Parse(c.base + "/ws")
	if err != nil {
		return err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1) // http→ws, https→wss
	conn, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}},
	})
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(4 << 20) // a resuming join can carry 1,000 messages

	if err := wsjson.Write(ctx, conn, frame{Type: "join", RoomID: roomID, Since: *since}); err != nil {
		return err
	}
	read := make(chan frame)
	readErr := make(chan error, 1)
	go func() {
		for {
			var f frame
			if err := wsjson.Read(ctx, conn, &f); err != nil {
				readErr <- err
				return
			}
			read <- f
		}
	}()
	show := func(m message) {
		if !newer(m.ID, *since) {
			return // already printed before a reconnect
		}
		*since = m.ID
		fmt.Printf("[%s] %s: %s\n", m.CreatedAt.Local().Format("15:04:05"), m.Username, m.Body)
	}
	for {
		select {
		case <-ctx.Done():
			conn.Close(websocket.StatusNormalClosure, "bye")
			return ctx.Err()
		case err := <-readErr:
			return err
		case line := <-lines:
			if err := wsjson.Write(ctx, conn, frame{Type: "send", RoomID: roomID, Body: line, Nonce: nonce()}); err != nil {
				return err
			}
		case f := <-read:
			switch f.Type {
			case "joined":
				log.Printf("joined room %s", roomID)
				for _, m := range f.Messages {
					show(m)
				}
			case "message":
				if f.Message != nil && f.Message.RoomID == roomID {
					show(*f.Message)
				}
			case "error":
				log.Printf("error %s: %s", f.Code, f.Text)
			case "room_deleted", "removed":
				return fmt.Errorf("%s: no longer in room %s", f.Type, roomID)
			}
		}
	}
}

// newer reports whether decimal ID a is larger than b ("" is smallest).
func newer(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
