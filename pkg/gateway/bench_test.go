package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// Go benchmarks of the gateway's hot paths:
//
//	go test -run '^$' -bench . -benchmem ./pkg/gateway
//
// BenchmarkIdleConn reports the memory one idle connection costs the
// server (CHATD_BENCH_CONNS connections, default 2000); BenchmarkRoomFanout
// the CPU of delivering one room message to each member's socket.

// rawClient is a minimal WebSocket client: a socket and nothing else, so
// its own memory hardly counts in the measurement.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRawClient(tb testing.TB, addr, token string) *rawClient {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(nc, "GET /api/v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n", addr, token)
	br := bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{nc: nc, br: br}
}

// send writes one masked text frame (mask key 0, so the payload is as is).
func (c *rawClient) send(tb testing.TB, payload string) {
	tb.Helper()
	if len(payload) >= 126 {
		tb.Fatal("rawClient frames are short")
	}
	b := append([]byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	if _, err := c.nc.Write(b); err != nil {
		tb.Fatal(err)
	}
}

// until reads frames until one contains s.
func (c *rawClient) until(tb testing.TB, s string) {
	tb.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(deadline))
	for {
		_, p, err := readFrame(c.br)
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		if bytes.Contains(p, []byte(s)) {
			return
		}
	}
}

func liveBytes() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

func BenchmarkIdleConn(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("CHATD_BENCH_CONNS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b, Config{MaxConnsPerUser: n + 1})
	token, _ := e.user("idle")
	room := e.room(false)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	join := fmt.Sprintf(`{"type":"join","room_id":"%d"}`, room)
	// One connection first, so lazily made process state is not counted.
	first := dialRawClient(b, addr, token)
	first.send(b, join)
	first.until(b, `"joined"`)
	heap0, stack0 := liveBytes()
	b.ResetTimer()
	clients := make([]*rawClient, 0, n)
	for len(clients) < n {
		c := dialRawClient(b, addr, token)
		c.send(b, join)
		c.until(b, `"joined"`)
		c.br = nil // the client keeps only its socket
		clients = append(clients, c)
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond)
	heap1, stack1 := liveBytes()
	b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-B/conn")
	b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-B/conn")
	b.ReportMetric(float64(heap1+stack1-heap0-stack0)/float64(n), "B/conn")
	if path := os.Getenv("CHATD_BENCH_HEAPPROFILE"); path != "" {
		// What the open connections hold: go tool pprof -sample_index=inuse_space
		if f, err := os.Create(path); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	for _, c := range clients {
		c.nc.Close()
	}
	first.nc.Close()
}

// BenchmarkRoomFanout publishes room messages to a room of members whose
// clients read and discard; it reports the server's cost per delivery
// (the clients' reading runs in the same process, so the figure is an
// upper bound).
func BenchmarkRoomFanout(b *testing.B) {
	const members = 100
	e := newEnv(b, Config{MaxConnsPerUser: members + 1})
	token, c := e.user("fan")
	room := e.room(false)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	join := fmt.Sprintf(`{"type":"join","room_id":"%d"}`, room)
	var wg sync.WaitGroup
	var read atomic.Int64 // bytes the clients read
	clients := make([]*rawClient, members)
	for i := range clients {
		cl := dialRawClient(b, addr, token)
		cl.send(b, join)
		cl.until(b, `"joined"`)
		clients[i] = cl
	}
	m := chat.Message{ID: 1, RoomID: room, UserID: c.User.ID, Username: "fan", Body: strings.Repeat("x", 100), CreatedAt: time.Now()}
	frame := messageFrame(m)
	msgs := []chat.RoomFrame{{Type: "message", User: 1, Data: frame}}
	e.g.mu.Lock()
	r := e.g.rooms[room]
	e.g.mu.Unlock()
	frameLen := int64(len(wsText(frame)))
	for _, cl := range clients {
		wg.Add(1)
		go func(cl *rawClient) {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				k, err := cl.br.Read(buf)
				read.Add(int64(k))
				if err != nil {
					return
				}
			}
		}(cl)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.g.onRoomFrames(r, msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	want := int64(b.N*members) * frameLen
	waitFor(b, "every delivery read", func() bool { return read.Load() >= want })
	for _, cl := range clients {
		cl.nc.Close()
	}
	wg.Wait()
	if got := read.Load(); got != want {
		b.Fatalf("clients read %d bytes, want %d", got, want)
	}
}
