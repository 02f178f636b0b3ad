package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

func TestMemConnCarriesBytesInOrder(t *testing.T) {
	a, b := memConnPair()
	var want bytes.Buffer
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(b)
		done <- got
	}()
	for i := range 2000 {
		chunk := bytes.Repeat([]byte{byte(i)}, i%300)
		want.Write(chunk)
		if _, err := a.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if got := <-done; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes, wrote %d, or in another order", len(got), want.Len())
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if n, err := b.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after close: %d, %v", n, err)
	}
}

func TestMemConnBothWays(t *testing.T) {
	a, b := memConnPair()
	// Writes never block, so both sides may write everything first.
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := a.Write(big); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("b read %v", err)
	}
	p := make([]byte, 4)
	if _, err := io.ReadFull(a, p); err != nil || string(p) != "pong" {
		t.Fatalf("a read %q, %v", p, err)
	}
}

func TestMemConnReadDeadline(t *testing.T) {
	a, b := memConnPair()
	if err := a.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	var ne net.Error
	if _, err := a.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("past deadline: %v, want a net.Error timeout", err)
	}
	// Clearing the deadline makes Read wait for data again.
	_ = a.SetReadDeadline(time.Time{})
	go func() { time.Sleep(10 * time.Millisecond); _, _ = b.Write([]byte("z")) }()
	p := make([]byte, 1)
	if n, err := a.Read(p); n != 1 || err != nil || p[0] != 'z' {
		t.Fatalf("got %d %q %v", n, p, err)
	}
	// A deadline set while a Read waits applies to it.
	errc := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = a.SetDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("read ignored a deadline set while it waited")
	}
	if a.LocalAddr().String() == "" || a.RemoteAddr().Network() != "memory" || a.SetWriteDeadline(time.Now()) != nil {
		t.Fatal("addresses or write deadline")
	}
}

// The embedded cache answers big pipelines and many concurrent callers over
// the in-memory connections, and still stops cleanly.
func TestEmbeddedCacheOverMemConn(t *testing.T) {
	c, err := Open(context.Background(), Config{Prefix: "mem:", RecentPerRoom: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msgs := make([]chat.Message, 5000)
	for i := range msgs {
		msgs[i] = msg(int64(i+1), int64(1+i%50), 1, fmt.Sprintf("n%d", i), "m")
	}
	res, err := c.ClaimNonces(ctx, msgs, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != nil {
			t.Fatalf("claim %d refused", i)
		}
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := c.AddRecent(ctx, msgs[g*50+i:g*50+i+1]); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.RecentAfter(ctx, msgs[g*50+i].RoomID, 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	again, err := c.ClaimNonces(ctx, msgs[:100], time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if r == nil || r.ID != msgs[i].ID {
			t.Fatalf("retry %d answered %v", i, r)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping after close succeeded")
	}
}
