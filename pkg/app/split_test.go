package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/config"
	"github.com/chatd/chatd/pkg/rpc/chatdv1"
)

var freePort = chattest.FreePort

// postWhenUp posts body to room, retrying while the answer is 503: a role
// in another process is unavailable until it has connected.
func postWhenUp(t *testing.T, c *client, room chat.ID, body, nonce string) chat.Message {
	t.Helper()
	var m chat.Message
	eventually(t, "a send to reach the roles in the other process", func() bool {
		r := c.do("POST", "/api/v1/rooms/"+room.String()+"/messages", map[string]string{"body": body, "nonce": nonce})
		if r.status == 503 {
			return false
		}
		if r.status != 201 {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
		r.decode(t, &m)
		return true
	})
	return m
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
	// The ingest process subscribes once it runs: until then, unavailable.
	first := postWhenUp(t, c, room.ID, "over nats", "n1")
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

// Roles in other processes are reached over gRPC with mutual TLS: the
// gateway process dials the user, room and query roles presenting its
// certificate, and a caller without one signed by grpc.tls.ca_file is
// refused before any role sees its request.
func TestRolesOverMutualTLS(t *testing.T) {
	certs := chattest.NewCerts(t)
	tlsSets := map[string]string{"grpc.tls.enabled": "true", "grpc.tls.ca_file": certs.CA,
		"grpc.tls.cert_file": certs.Cert, "grpc.tls.key_file": certs.Key}
	natsPort, grpcPort := freePort(t), freePort(t)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	backSets := map[string]string{"roles": "user,room,query,ingest,store,index",
		"nats.listen": fmt.Sprintf("127.0.0.1:%d", natsPort), "grpc.addr": grpcAddr}
	maps.Copy(backSets, tlsSets)
	startServer(t, "", backSets)
	frontSets := map[string]string{"roles": "gateway", "nats.urls": fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		"grpc.user_addr": grpcAddr, "grpc.room_addr": grpcAddr, "grpc.query_addr": grpcAddr}
	maps.Copy(frontSets, tlsSets)
	front := startServer(t, "", frontSets)

	c := front.newUser(t, "mtls")
	room := c.createRoom("over mutual TLS", false)
	sent := postWhenUp(t, c, room.ID, "hello over mtls", "m1")
	eventually(t, "the message read back through the query role", func() bool {
		var page struct{ Messages []chat.Message }
		c.do("GET", "/api/v1/rooms/"+room.ID.String()+"/messages?limit=10", nil).decode(t, &page)
		return len(page.Messages) == 1 && page.Messages[0].ID == sent.ID
	})
	// The member list crosses two roles of the other process: the room
	// role lists, the user role names.
	var members struct{ Members []chat.User }
	if r := c.do("GET", "/api/v1/rooms/"+room.ID.String()+"/members", nil); r.status != 200 {
		t.Fatalf("members over gRPC: %d %s", r.status, r.body)
	} else if r.decode(t, &members); len(members.Members) != 1 || members.Members[0].ID != c.user.ID {
		t.Fatalf("members over gRPC: %s", r.body)
	}

	// Callers the server must refuse: no client certificate, one signed
	// by another CA, and plaintext.
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate": credentials.NewTLS(certs.ClientTLS),
		"untrusted client":      credentials.NewTLS(certs.ClientOtherTLS),
		"plaintext":             insecure.NewCredentials(),
	} {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = conn.Invoke(ctx, "/chatd.v1.UserService/GetUserByName", &chatdv1.GetUserByNameRequest{Username: []byte("x")}, &chatdv1.User{})
		cancel()
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want the connection refused (Unavailable)", name, err)
		}
	}

	// A grpc.tls that cannot be loaded stops start-up, naming the key.
	bad := maps.Clone(backSets)
	bad["grpc.tls.ca_file"] = filepath.Join(t.TempDir(), "missing.pem")
	bad["data_dir"], bad["http.addr"], bad["nats.listen"], bad["grpc.addr"] = t.TempDir(), "127.0.0.1:0", "", fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg, err := config.Load("", nil, bad)
	if err != nil {
		t.Fatal(err)
	}
	m := app.New(cfg, slog.New(slog.DiscardHandler))
	err = m.Open(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "grpc.tls") {
		t.Fatalf("Open with a missing grpc.tls.ca_file: %v", err)
	}
}

// A gRPC port open beyond loopback without TLS, or with TLS that takes
// clients without a certificate, is warned about at start-up.
func TestPlaintextGRPCWarned(t *testing.T) {
	certs := chattest.NewCerts(t)
	serverOnly := map[string]string{"grpc.tls.enabled": "true", "grpc.tls.cert_file": certs.Cert, "grpc.tls.key_file": certs.Key}
	mutual := maps.Clone(serverOnly)
	mutual["grpc.tls.ca_file"] = certs.CA
	for _, c := range []struct {
		addr string
		tls  map[string]string
		warn string
	}{
		{fmt.Sprintf("127.0.0.1:%d", freePort(t)), nil, ""},
		{fmt.Sprintf("0.0.0.0:%d", freePort(t)), nil, "without TLS or authentication"},
		{fmt.Sprintf(":%d", freePort(t)), nil, "without TLS or authentication"},
		{fmt.Sprintf(":%d", freePort(t)), serverOnly, "without a certificate"},
		{fmt.Sprintf(":%d", freePort(t)), mutual, ""},
	} {
		var logs strings.Builder
		sets := map[string]string{"data_dir": t.TempDir(), "http.addr": "127.0.0.1:0", "roles": "user,room,query", "grpc.addr": c.addr}
		maps.Copy(sets, c.tls)
		cfg, err := config.Load("", nil, sets)
		if err != nil {
			t.Fatal(err)
		}
		m := app.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err := m.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		m.Close()
		warned := strings.Contains(logs.String(), "grpc.addr")
		if warned != (c.warn != "") || !strings.Contains(logs.String(), c.warn) {
			t.Errorf("grpc.addr %s, tls %v: log %q, want a warning containing %q", c.addr, c.tls != nil, logs.String(), c.warn)
		}
	}
}
