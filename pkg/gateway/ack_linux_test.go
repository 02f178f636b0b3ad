package gateway

import (
	"fmt"
	"net"
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
