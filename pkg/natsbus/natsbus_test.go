package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
)

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.tb.Log(string(p)); return len(p), nil }

func startEmbedded(tb testing.TB, cfg EmbeddedConfig) *Embedded {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	e, err := StartEmbedded(cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("start embedded: %v", err)
	}
	tb.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
	return e
}

func connect(tb testing.TB, cfg ConnectConfig) *nats.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := Connect(ctx, cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func TestInProcessAndEvents(t *testing.T) {
	e := startEmbedded(t, EmbeddedConfig{})
	if e.ClientURL() != "" {
		t.Fatalf("no listen address given, yet client URL %q", e.ClientURL())
	}
	nc := connect(t, ConnectConfig{Embedded: e, Name: "test"})
	sub, err := nc.SubscribeSync(chat.SubjectControl)
	if err != nil {
		t.Fatal(err)
	}
	want := chat.ControlEvent{Type: chat.EventMemberRemoved, RoomID: 7, UserID: 9}
	if err := NewEvents(nc).PublishControl(want); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got chat.ControlEvent
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// JetStream is on.
	if _, err := nc.JetStream(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 10*time.Second); err != nil {
		t.Fatalf("jetstream info: %v", err)
	}
}

func TestClusterOverTCP(t *testing.T) {
	// JetStream clustering wants routes configured on every node, so the
	// cluster ports must be known up front; each node lists all of them,
	// itself included, as an operator's config would.
	routes := []string{freeAddr(t), freeAddr(t)}
	a := startEmbedded(t, EmbeddedConfig{ServerName: "a", ListenAddr: "127.0.0.1:-1", ClusterName: "chatd", ClusterListen: routes[0], Routes: routes})
	b := startEmbedded(t, EmbeddedConfig{ServerName: "b", ListenAddr: "127.0.0.1:-1", ClusterName: "chatd", ClusterListen: routes[1], Routes: routes})
	na := connect(t, ConnectConfig{URLs: []string{a.ClientURL()}, Name: "a"})
	nb := connect(t, ConnectConfig{URLs: []string{b.ClientURL()}, Name: "b"})
	sub, err := nb.SubscribeSync("x.y")
	if err != nil {
		t.Fatal(err)
	}
	if err := nb.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest propagates over the route asynchronously: publish until the
	// subscriber on the other node sees a message.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := na.Publish("x.y", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("message never crossed the cluster route")
		}
	}
}

func freeAddr(tb testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", chattest.FreePort(tb)) }

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []EmbeddedConfig{
		{},
		{StoreDir: t.TempDir(), ListenAddr: "nope"},
		{StoreDir: t.TempDir(), ClusterListen: "127.0.0.1:-1"},
	} {
		if _, err := StartEmbedded(cfg, testLogger(t)); chat.ErrorCode(err) != chat.EINVALID {
			t.Errorf("%+v: got %v, want invalid", cfg, err)
		}
	}
}
