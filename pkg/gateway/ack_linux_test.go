package gateway

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dataSegsIn is how many TCP segments carrying data c has received: one
// per socket write of the server (each write here is far under the
// loopback MSS, and the server's socket has Nagle off).
func dataSegsIn(t *testing.T, c *net.TCPConn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return info.Data_segs_in
}

// A sender in the room gets its ack and its own message in one socket
// write, ack first, whichever of the ingest answer and the room frame
// reaches the gateway first. The hold is lengthened so the test does not
// depend on how fast this machine delivers the frame.
func TestAckAndOwnMessageShareOneWrite(t *testing.T) {
	e := newEnv(t, Config{})
	e.g.ackHold = time.Minute
	e.poster.likeIngest = true
	tok, _ := e.user("alice")
	room := e.room(false)
	c, tcp := e.dialTCP(tok)
	c.join(room)
	for i := range 20 {
		before := dataSegsIn(t, tcp)
		nonce := fmt.Sprint("n", i)
		c.write(map[string]any{"type": "send", "room_id": room.String(), "body": "hello", "nonce": nonce})
		ack := c.expect("ack")
		msg := c.expect("message")
		if *ack.Nonce != nonce || msg.Message.ID != ack.Message.ID {
			t.Fatalf("send %d: ack %s, then %s", i, ack.raw, msg.raw)
		}
		if n := dataSegsIn(t, tcp) - before; n != 1 {
			t.Fatalf("send %d: ack and message came in %d writes, want 1", i, n)
		}
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
func TestHeldAckGoesFirst(t *testing.T) {
	e := newEnv(t, Config{})
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
