package app_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/config"
)

// TestMain lets the test binary act as a chatd process, so the kill test
// can SIGKILL a real separate process without building the binary.
func TestMain(m *testing.M) {
	if os.Getenv("CHATD_E2E_CHILD") == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func childMain() int {
	cfg, err := config.Load("", os.Environ(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	m := app.New(cfg, log)
	if err := m.Open(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ADDR %s\n", m.Addr())
	err = m.Run(ctx)
	m.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type child struct {
	cmd  *exec.Cmd
	base string
}

func startChild(t *testing.T, dataDir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHATD_E2E_CHILD=1", "CHATD_DATA_DIR="+dataDir, "CHATD_HTTP_ADDR=127.0.0.1:0",
		"CHATD_LIMITS_SEND_RATE=0", "CHATD_LIMITS_LOGIN_RATE=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return &child{cmd: cmd, base: "http://" + a}
	case <-time.After(60 * time.Second):
		t.Fatal("child chatd did not start")
		return nil
	}
}

// A SIGKILL at any moment loses no acknowledged message: after a restart on
// the same data dir, every acked message is in the store exactly once and
// is found by search.
func TestKillRestartLosesNoAckedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	c1 := startChild(t, dir)
	srv := &server{t: t, base: c1.base}
	a := srv.newUser(t, "dur")
	room := a.createRoom("durable", false)

	ws := a.dial("/api/v1/ws")
	var mu sync.Mutex
	acked := map[chat.ID]string{}
	ackedN := make(chan int, 1<<16)
	go func() {
		for f := range ws.in {
			if f.Type == "ack" && f.Message != nil {
				mu.Lock()
				acked[f.Message.ID] = f.Message.Body
				n := len(acked)
				mu.Unlock()
				ackedN <- n
			}
		}
	}()
	// Keep sends in flight while the process is killed.
	stopSending := make(chan struct{})
	sendDone := make(chan struct{})
	var lastSent atomic.Int64
	go func() {
		defer close(sendDone)
		for i := 0; ; i++ {
			select {
			case <-stopSending:
				return
			default:
			}
			b := fmt.Sprintf(`{"type":"send","room_id":"%s","body":"durable m%d","nonce":"k%d"}`, room.ID, i, i)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := ws.c.Write(ctx, 1, []byte(b))
			cancel()
			if err != nil || i > 20000 {
				return
			}
			lastSent.Store(int64(i))
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case n := <-ackedN:
			if n >= 400 {
				break wait
			}
		case <-deadline:
			t.Fatal("no 400 acks within 60s")
		}
	}
	if err := c1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c1.cmd.Wait()
	close(stopSending)
	<-sendDone
	// Let the reader drain what arrived before the socket died.
	<-ws.closed
	mu.Lock()
	want := make(map[chat.ID]string, len(acked))
	for id, b := range acked {
		want[id] = b
	}
	mu.Unlock()
	t.Logf("%d messages acked before SIGKILL", len(want))

	c2 := startChild(t, dir)
	a.base = c2.base // the session survived the restart too
	path := "/api/v1/rooms/" + room.ID.String() + "/messages?limit=200"
	var stored []chat.Message
	// readAll pages the room's whole history into stored.
	readAll := func() bool {
		stored = stored[:0]
		before := ""
		for {
			r := a.do("GET", path+before, nil)
			if r.status != 200 {
				return false
			}
			var page struct {
				Messages   []chat.Message `json:"messages"`
				NextBefore *string        `json:"next_before"`
			}
			r.decode(t, &page)
			stored = append(stored, page.Messages...)
			if page.NextBefore == nil {
				return true
			}
			before = "&before=" + *page.NextBefore
		}
	}
	eventually(t, "every acked message in the store", func() bool {
		if !readAll() {
			return false
		}
		have := map[chat.ID]bool{}
		for _, m := range stored {
			have[m.ID] = true
		}
		for id := range want {
			if !have[id] {
				return false
			}
		}
		return true
	})
	seenID, seenBody := map[chat.ID]bool{}, map[string]bool{}
	for _, m := range stored {
		if seenID[m.ID] || seenBody[m.Body] {
			t.Fatalf("message stored twice: %v %q", m.ID, m.Body)
		}
		seenID[m.ID], seenBody[m.Body] = true, true
		if b, ok := want[m.ID]; ok && b != m.Body {
			t.Fatalf("message %v body %q, acked as %q", m.ID, m.Body, b)
		}
	}
	// The client retries the sends it may not have seen acked, with the
	// same nonces, as a client does after a reconnect. The embedded cache
	// is in memory, so it is refilled from the log at start-up: every
	// retry of a stored send gets the stored message back, never a copy.
	byBody := make(map[string]chat.ID, len(want))
	maxAcked := 0
	for id, b := range want {
		byBody[b] = id
		var i int
		if _, err := fmt.Sscanf(b, "durable m%d", &i); err == nil {
			maxAcked = max(maxAcked, i)
		}
	}
	// Around the last ack: acked sends, and sends that reached the log
	// but whose ack the kill cut off.
	ws2 := a.dial("/api/v1/ws")
	first := max(0, maxAcked-100)
	last := min(int(lastSent.Load()), maxAcked+300)
	for i := first; i <= last; i++ {
		ws2.sendRaw([]byte(fmt.Sprintf(`{"type":"send","room_id":"%s","body":"durable m%d","nonce":"k%d"}`, room.ID, i, i)))
	}
	for i := first; i <= last; i++ {
		f := ws2.next("ack", "error")
		if f.Type != "ack" || f.Message == nil {
			t.Fatalf("retry of k%d: %s %s", i, f.Code, f.ErrMessage)
		}
		if id, ok := byBody[f.Message.Body]; ok && f.Message.ID != id {
			t.Fatalf("retry of an acked send got message %v, acked as %v", f.Message.ID, id)
		}
		want[f.Message.ID] = f.Message.Body
	}
	eventually(t, "every message stored once after the retries", func() bool {
		return readAll() && len(stored) >= len(want)
	})
	seenBody = map[string]bool{}
	for _, m := range stored {
		if seenBody[m.Body] {
			t.Fatalf("retried send stored twice: %q", m.Body)
		}
		seenBody[m.Body] = true
	}
	t.Logf("%d retries after the restart, none stored twice", last-first+1)

	// And the index has every one of them.
	eventually(t, "every acked message searchable", func() bool {
		found := map[chat.ID]bool{}
		cursor := ""
		for i := 0; i < 200; i++ {
			r := a.do("GET", "/api/v1/search?q=durable&limit=200&room_id="+room.ID.String()+cursor, nil)
			if r.status != 200 {
				return false
			}
			var res struct {
				Hits []struct {
					Message chat.Message `json:"message"`
				} `json:"hits"`
				NextCursor *string `json:"next_cursor"`
			}
			r.decode(t, &res)
			for _, h := range res.Hits {
				found[h.Message.ID] = true
			}
			if res.NextCursor == nil || *res.NextCursor == "" {
				break
			}
			cursor = "&cursor=" + *res.NextCursor
		}
		for id := range want {
			if !found[id] {
				return false
			}
		}
		return true
	})
}
