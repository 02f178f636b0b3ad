package app_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A gateway in a process with the ingest role hands it sends in process
// (every other test); without it, sends go over NATS to an ingest process.
// The contract is the same: durable ack, nonce dedupe, ack before the
// message frame, stored once.
func TestSendToIngestInAnotherProcess(t *testing.T) {
	port := freePort(t)
	a := startServer(t, "", map[string]string{
		"roles": "user,room,gateway,query,store,index", "nats.listen": fmt.Sprintf("127.0.0.1:%d", port)})
	startServer(t, "", map[string]string{"roles": "ingest", "nats.urls": fmt.Sprintf("nats://127.0.0.1:%d", port)})

	c := a.newUser(t, "split")
	room := c.createRoom("split roles", false)
	path := "/api/v1/rooms/" + room.ID.String() + "/messages"
	var first chat.Message
	// The ingest process subscribes once it runs: until then, unavailable.
	eventually(t, "a send to reach the other process's ingest", func() bool {
		r := c.do("POST", path, map[string]string{"body": "over nats", "nonce": "n1"})
		if r.status == 503 {
			return false
		}
		if r.status != 201 {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
		r.decode(t, &first)
		return true
	})
	if again := c.post(room.ID, "over nats", "n1"); again.ID != first.ID {
		t.Fatalf("retry got %v, want %v", again.ID, first.ID)
	}
	w := c.dial("/api/v1/ws")
	w.join(room.ID)
	w.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "socket", "nonce": "n2"})
	ack := w.next("ack", "message")
	if ack.Type != "ack" || ack.Message == nil || ack.Message.Body != "socket" {
		t.Fatalf("sender got %+v before its ack", ack)
	}
	if m := w.next("message"); m.Message == nil || m.Message.ID != ack.Message.ID {
		t.Fatalf("message frame %+v", m)
	}
	eventually(t, "both messages in the store", func() bool {
		var page struct{ Messages []chat.Message }
		c.do("GET", path+"?limit=10", nil).decode(t, &page)
		return len(page.Messages) == 2 && page.Messages[0].ID == first.ID && page.Messages[1].ID == ack.Message.ID
	})
}
