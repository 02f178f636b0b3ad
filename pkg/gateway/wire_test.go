package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readFrame parses one unmasked server frame.
func readFrame(r *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x70 != 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("bad header %x", h)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
		if n < 126 {
			return 0, nil, fmt.Errorf("non-minimal 16-bit length %d", n)
		}
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
		if n < 1<<16 {
			return 0, nil, fmt.Errorf("non-minimal 64-bit length %d", n)
		}
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0], payload, err
}

func TestWsTextLengths(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 200000} {
		p := bytes.Repeat([]byte{'x'}, n)
		op, got, err := readFrame(bufio.NewReader(bytes.NewReader(wsText(p))))
		if err != nil || op != 0x81 || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: op %x, %d bytes, err %v", n, op, len(got), err)
		}
	}
}

// tcpPair returns the two ends of a loopback TCP connection, so direct
// writes, partial writes and a full socket buffer are the real thing.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Socket buffers stay at their defaults: tiny ones put loopback TCP
	// into zero-window probing, whose back-off stalls for seconds.
	t.Cleanup(func() { r.c.Close(); client.Close() })
	return r.c, client
}

// TestWireOrderUnderBackpressure sends frames of many sizes to a reader
// that starts late, while control frames go through Write concurrently:
// every frame must arrive whole and in its order.
func TestWireOrderUnderBackpressure(t *testing.T) {
	srv, cli := tcpPair(t)
	w := newWire(srv, nil, 20*time.Second, nil)
	const frames = 4000
	const controls = 50
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < controls; i++ {
			// A pong as the library frames it: header and payload in one Write.
			p := fmt.Appendf(nil, "ctl-%d", i)
			if _, err := w.Write(append([]byte{0x8a, byte(len(p))}, p...)); err != nil {
				t.Errorf("control write %d: %v", i, err)
				return
			}
		}
	}()
	for i := 0; i < frames; i++ {
		size := 10 + (i*7919)%3000
		if i%500 == 0 {
			size = 70000 // a 64-bit length frame
		}
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		copy(p, fmt.Sprintf("%d:", i))
		if r := w.send(wsText(p), frames); r != sent {
			t.Fatalf("send %d: %v", i, r)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the backlog build before reading
	w.mu.Lock()
	backlog := w.queued
	w.mu.Unlock()
	if backlog == 0 {
		t.Fatal("every frame was written directly: the queue was not exercised")
	}
	br := bufio.NewReader(cli)
	next, ctl := 0, 0
	for next < frames || ctl < controls {
		_ = cli.SetReadDeadline(time.Now().Add(deadline))
		op, p, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %d frames and %d controls: %v", next, ctl, err)
		}
		switch op {
		case 0x8a:
			if want := fmt.Sprintf("ctl-%d", ctl); string(p) != want {
				t.Fatalf("control %q, want %q", p, want)
			}
			ctl++
		case 0x81:
			if want := fmt.Sprintf("%d:", next); !bytes.HasPrefix(p, []byte(want)) {
				t.Fatalf("frame %q..., want %q", p[:min(len(p), 12)], want)
			}
			for _, b := range p[len(fmt.Sprintf("%d:", next)):] {
				if b != byte('a'+next%26) {
					t.Fatalf("frame %d corrupted", next)
				}
			}
			next++
		default:
			t.Fatalf("opcode %x", op)
		}
	}
	wg.Wait()
}

// TestWireFullAndDrop fills the queue of a reader that never reads:
// send reports full at the limit, and dropQueued leaves a stream that
// still parses, with the close frame written after the drop next.
func TestWireFullAndDrop(t *testing.T) {
	srv, cli := tcpPair(t)
	w := newWire(srv, nil, 20*time.Second, nil)
	const max = 8
	p := bytes.Repeat([]byte{'z'}, 1000)
	n := 0
	for ; n < 100000; n++ {
		r := w.send(wsText(p), max)
		if r == full {
			break
		}
		if r != sent {
			t.Fatalf("send %d: %v", n, r)
		}
	}
	if n == 100000 {
		t.Fatal("the queue never filled")
	}
	w.dropQueued()
	done := make(chan error, 1)
	go func() {
		_, err := w.Write([]byte{0x88, 2, 0x03, 0xf3}) // close 1011
		done <- err
	}()
	br := bufio.NewReader(cli)
	data := 0
	for {
		_ = cli.SetReadDeadline(time.Now().Add(deadline))
		op, got, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %d frames: %v", data, err)
		}
		if op == 0x88 {
			break
		}
		if op != 0x81 || !bytes.Equal(got, p) {
			t.Fatalf("frame %d: op %x, %d bytes", data, op, len(got))
		}
		data++
	}
	if err := <-done; err != nil {
		t.Fatalf("close write: %v", err)
	}
	if data >= n {
		t.Fatalf("%d of %d frames arrived: nothing was dropped", data, n)
	}
}

// TestWireWriteError: a peer that goes away fails later sends, wakes a
// waiting Write and reports the error once.
func TestWireWriteError(t *testing.T) {
	srv, cli := tcpPair(t)
	var calls atomic.Int32
	w := newWire(srv, nil, 20*time.Second, func(error) { calls.Add(1) })
	// Fill the socket so a writer is queued, then take the peer away.
	p := wsText(bytes.Repeat([]byte{'q'}, 4000))
	for i := 0; i < 10000 && w.send(p, 1<<20) == sent; i++ {
		w.mu.Lock()
		queued := len(w.q) > 4
		w.mu.Unlock()
		if queued {
			break
		}
	}
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte{0x89, 0}); done <- err }()
	_ = cli.(*net.TCPConn).SetLinger(0)
	cli.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Write to a reset peer succeeded")
		}
	case <-time.After(deadline):
		t.Fatal("Write did not return after the peer went away")
	}
	end := time.Now().Add(deadline)
	for w.send(p, 1<<20) != broken {
		if time.Now().After(end) {
			t.Fatal("send still succeeds after the peer went away")
		}
		time.Sleep(time.Millisecond)
	}
	if c := calls.Load(); c > 1 {
		t.Fatalf("onError called %d times", c)
	}
}

// TestWireLeftover: bytes read before the upgrade come first.
func TestWireLeftover(t *testing.T) {
	srv, cli := tcpPair(t)
	w := newWire(srv, []byte("early"), time.Second, nil)
	go func() { _, _ = cli.Write([]byte("late")) }()
	b := make([]byte, 3)
	var got []byte
	for len(got) < len("earlylate") {
		n, err := w.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "earlylate" {
		t.Fatalf("read %q", got)
	}
}

func BenchmarkWsText(b *testing.B) {
	p := bytes.Repeat([]byte{'x'}, 300)
	b.ReportAllocs()
	for b.Loop() {
		_ = wsText(p)
	}
}
