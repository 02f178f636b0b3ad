package jetstream_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/jetstream"
	"github.com/chatd/chatd/pkg/natsbus"
	njs "github.com/nats-io/nats.go/jetstream"
)

// consumeInto consumes group until the test ends, collecting messages.
func consumeInto(tb testing.TB, l chat.Log, group string) func() []chat.Message {
	tb.Helper()
	var mu sync.Mutex
	var got []chat.Message
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(ctx, group, func(_ context.Context, b []chat.Message) error {
			mu.Lock()
			got = append(got, b...)
			mu.Unlock()
			return nil
		})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("consume: %v", err)
		}
	})
	return func() []chat.Message {
		mu.Lock()
		defer mu.Unlock()
		return append([]chat.Message(nil), got...)
	}
}

func waitAll(tb testing.TB, get func() []chat.Message, want []chat.Message) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[chat.ID]bool{}
		for _, m := range get() {
			seen[m.ID] = true
		}
		missing := 0
		for _, m := range want {
			if !seen[m.ID] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d messages never consumed", missing, len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A consumer deleted behind the log's back is recreated; nothing is lost.
func TestConsumerDeletedIsRecreated(t *testing.T) {
	nc := conn(t)
	l := openLog(t, nc, jetstream.LogConfig{})
	stream := l.StreamName()
	get := consumeInto(t, l, "g")
	first := chattest.LogMessages(t, 50, 2)
	if err := l.Append(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitAll(t, get, first)
	js, _ := njs.New(nc)
	if err := js.DeleteConsumer(context.Background(), stream, "g"); err != nil {
		t.Fatal(err)
	}
	second := chattest.LogMessages(t, 50, 2)
	if err := l.Append(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	waitAll(t, get, second)
}

// Three chatd nodes' embedded servers form one cluster; the log is
// replicated three ways and survives losing a node.
func TestReplicatedLogInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, l.Addr().String())
		l.Close()
	}
	var nodes []*natsbus.Embedded
	for i, r := range routes {
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedConfig{
			ServerName: string(rune('a' + i)), StoreDir: t.TempDir(), ListenAddr: "127.0.0.1:-1",
			ClusterName: "chatd", ClusterListen: r, Routes: routes,
		}, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Shutdown(); e.WaitForShutdown() })
		nodes = append(nodes, e)
	}
	var urls []string
	for _, e := range nodes {
		urls = append(urls, e.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nc, err := natsbus.Connect(ctx, natsbus.ConnectConfig{URLs: urls, Name: "test"}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := jetstream.NewLog(ctx, nc, jetstream.LogConfig{Replicas: 3}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	get := consumeInto(t, l, "store")
	msgs := chattest.LogMessages(t, 200, 4)
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	waitAll(t, get, msgs)

	// Lose a node. Appends may fail while a new leader is elected; the
	// caller retries with the same messages, and the duplicate window
	// keeps a retried message from being stored twice.
	nodes[2].Shutdown()
	nodes[2].WaitForShutdown()
	more := chattest.LogMessages(t, 200, 4)
	for i := 0; ; i++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.Append(actx, more)
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("append after losing a node: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitAll(t, get, more)
	deadline := time.Now().Add(30 * time.Second)
	for {
		lag, err := l.Lag(ctx, "store")
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %d, %v", lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(get()); n < 400 {
		t.Fatalf("consumed %d, want at least 400", n)
	}
}
