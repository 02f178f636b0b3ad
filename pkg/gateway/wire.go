package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server frames are written by the gateway itself, not through
// coder/websocket's Write: the library flushes after every message, so each
// frame would cost one write system call and one goroutine wake-up of a
// per-connection writer. A server frame is a fixed header and the JSON
// (RFC 6455 5.2: FIN, text opcode, no mask, no extension bits), so a room
// message is framed once and the same bytes go to every member.
//
// wire sits beneath the library as its net.Conn, so the library's own
// control frames (ping, pong, close) share one ordered output with ours:
//   - A frame for an idle socket is written at once, without blocking
//     (direct write; partial writes leave the rest queued).
//   - When the socket is busy, frames queue, and one short-lived flusher
//     goroutine writes everything queued with one writev per batch. A
//     connection that falls behind therefore gets fewer, larger writes.
//   - The library's writes go through the same queue and wait for their
//     turn, so a close frame follows every frame queued before it.
//
// The library never writes a data frame here (the gateway does not call
// Conn.Write), and its control frames are at most 127 bytes, so with a
// write buffer larger than that each of its Write calls is whole frames.

const (
	// wireReadBuffer is the library's read buffer per connection. Client
	// frames are small; a larger payload is read past the buffer.
	wireReadBuffer = 128
	// wireWriteBuffer holds one control frame (2 + 125 bytes).
	wireWriteBuffer = 128
)

// wsText frames payload as one unmasked text frame.
func wsText(payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n < 1<<16:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		b[2], b[3] = byte(n>>8), byte(n)
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		for i := 0; i < 8; i++ {
			b[9-i] = byte(uint64(n) >> (8 * i))
		}
	}
	b[0] = 0x81 // FIN | text
	return append(b, payload...)
}

// sendResult is what wire.send did with a frame.
type sendResult int

const (
	sent   sendResult = iota // written or queued
	full                     // the queue is at its limit: a slow consumer
	broken                   // the socket failed or is closed
)

// wire is the net.Conn handed to coder/websocket.
type wire struct {
	net.Conn
	raw     *rawSocket // nil: always queue, and wait for input in the library
	timeout time.Duration
	onError func(error) // called once, from the flusher, on a write error

	leftover []byte // read before the upgrade, returned by Read first

	mu      sync.Mutex
	cond    sync.Cond // signals progress of written, and writing ending
	q       net.Buffers
	spare   net.Buffers // the previous batch's slice, reused
	partial bool        // q[0] is the rest of a frame already begun
	writing bool        // a flusher owns the socket
	queued  uint64      // frames ever queued
	written uint64      // frames of those written (or dropped)
	err     error
}

func newWire(nc net.Conn, leftover []byte, timeout time.Duration, onError func(error)) *wire {
	w := &wire{Conn: nc, timeout: timeout, onError: onError, raw: newRawSocket(nc)}
	if len(leftover) > 0 {
		w.leftover = leftover
	}
	w.cond.L = &w.mu
	return w
}

func (w *wire) Read(p []byte) (int, error) {
	if len(w.leftover) > 0 {
		n := copy(p, w.leftover)
		w.leftover = w.leftover[n:]
		if len(w.leftover) == 0 {
			w.leftover = nil
		}
		return n, nil
	}
	return w.Conn.Read(p)
}

// send writes or queues one ready frame (shared, never modified) without
// blocking. limit bounds the queue in frames.
func (w *wire) send(frame []byte, limit int) sendResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return broken
	}
	if !w.writing && len(w.q) == 0 && w.raw != nil {
		n, err := w.raw.tryWrite(frame)
		if err != nil {
			w.fail(err)
			return broken
		}
		if n == len(frame) {
			return sent
		}
		frame = frame[n:]
		w.partial = n > 0
	} else if len(w.q) >= limit {
		return full
	}
	w.enqueueLocked(frame)
	return sent
}

func (w *wire) enqueueLocked(b []byte) {
	w.q = append(w.q, b)
	w.queued++
	if !w.writing {
		w.writing = true
		go w.flush()
	}
}

// Write is the library's path (control frames). It returns once the bytes
// are written, in order after everything queued before them.
func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	b := p
	if !w.writing && len(w.q) == 0 && w.raw != nil {
		n, err := w.raw.tryWrite(b)
		if err != nil {
			w.fail(err)
			return 0, err
		}
		if n == len(b) {
			return n, nil
		}
		b = b[n:]
		w.partial = n > 0
	}
	// The caller reuses p once Write returns; the queue keeps a copy.
	w.enqueueLocked(append([]byte(nil), b...))
	target := w.queued
	for w.written < target && w.err == nil {
		w.cond.Wait()
	}
	if w.written < target {
		return 0, w.err
	}
	return len(p), nil
}

// dropQueued forgets frames not yet begun (a slow consumer's backlog), so
// a close frame goes out next. A frame partly written is kept whole.
func (w *wire) dropQueued() {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := 0
	if w.partial {
		keep = 1
	}
	if len(w.q) > keep {
		w.written += uint64(len(w.q) - keep)
		clear(w.q[keep:])
		w.q = w.q[:keep]
		w.cond.Broadcast()
	}
}

// fail records the socket's first error and wakes every waiter. Caller
// holds mu.
func (w *wire) fail(err error) {
	if w.err == nil {
		w.err = err
		w.cond.Broadcast()
	}
}

// flush writes queued frames until the queue is empty, one writev per
// batch, with a deadline per batch.
func (w *wire) flush() {
	for {
		w.mu.Lock()
		if len(w.q) == 0 || w.err != nil {
			w.writing = false
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		batch := w.q
		w.q, w.spare = w.spare[:0], nil
		w.partial = false
		w.mu.Unlock()

		n := uint64(len(batch))
		full := batch[:len(batch):len(batch)]
		_ = w.Conn.SetWriteDeadline(time.Now().Add(w.timeout))
		_, err := batch.WriteTo(w.Conn)
		// Direct writes check the deadline too; clear it for them.
		_ = w.Conn.SetWriteDeadline(time.Time{})
		clear(full)

		w.mu.Lock()
		if err != nil {
			w.fail(err)
			w.writing = false
			w.mu.Unlock()
			if w.onError != nil {
				w.onError(err)
			}
			return
		}
		w.written += n
		if cap(full) <= 1024 {
			w.spare = full[:0]
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// Close closes the socket and fails pending and later writes.
func (w *wire) Close() error {
	w.mu.Lock()
	w.fail(net.ErrClosed)
	w.mu.Unlock()
	return w.Conn.Close()
}

// waitReadable blocks until the socket has input; see rawSocket.
func (w *wire) waitReadable() {
	if w.raw != nil && len(w.leftover) == 0 {
		w.raw.waitReadable()
	}
}

// wireHijacker hands coder/websocket a wire instead of the raw connection,
// and small buffers instead of net/http's 4 KiB ones, which an idle
// connection would otherwise hold for its lifetime.
type wireHijacker struct {
	http.ResponseWriter
	timeout time.Duration
	onError func(error)
	wire    *wire
	br      *bufio.Reader // the library's reader, for Buffered
}

func (h *wireHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		// net/http flushes the 101 before hijacking; anything else
		// would be lost below.
		_ = nc.Close()
		return nil, nil, errors.New("gateway: unflushed response at hijack")
	}
	var leftover []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		leftover = append([]byte(nil), b...)
	}
	w := newWire(nc, leftover, h.timeout, h.onError)
	h.wire, h.br = w, bufio.NewReaderSize(w, wireReadBuffer)
	return w, bufio.NewReadWriter(h.br, bufio.NewWriterSize(w, wireWriteBuffer)), nil
}
