package redis

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// memConn is one end of an in-memory, full-duplex connection with unbounded
// buffers: the embedded miniredis is spoken to through it instead of
// loopback TCP. miniredis flushes after every command of a pipeline, so over
// TCP each command cost a write and a read syscall on either side; here it
// costs a copy. Writes never block (so neither side can deadlock on a full
// pipe); reads honour read deadlines, which go-redis sets for its timeouts.
type memConn struct {
	in, out  *memPipe
	deadline atomic.Int64 // read deadline, unix nanoseconds; 0: none
}

// memPipe carries bytes one way. One goroutine reads at a time (a go-redis
// connection is used by one caller at a time; miniredis reads each
// connection on one goroutine).
type memPipe struct {
	mu     sync.Mutex
	buf    []byte
	off    int // read position in buf
	closed bool
	ready  chan struct{} // signalled after a write or close
}

func newMemPipe() *memPipe { return &memPipe{ready: make(chan struct{}, 1)} }

// memConnPair returns the two ends of a new connection.
func memConnPair() (*memConn, *memConn) {
	a, b := newMemPipe(), newMemPipe()
	return &memConn{in: a, out: b}, &memConn{in: b, out: a}
}

func (p *memPipe) signal() {
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

func (p *memPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
}

func (c *memConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p := c.in
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.off < len(p.buf) {
			n := copy(b, p.buf[p.off:])
			p.off += n
			if p.off == len(p.buf) {
				p.buf, p.off = p.buf[:0], 0
			}
			p.mu.Unlock()
			return n, nil
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		var expired <-chan time.Time
		if d := c.deadline.Load(); d != 0 {
			wait := time.Until(time.Unix(0, d))
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case <-p.ready:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *memConn) Write(b []byte) (int, error) {
	p := c.out
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, net.ErrClosed
	}
	p.buf = append(p.buf, b...)
	p.mu.Unlock()
	p.signal()
	return len(b), nil
}

// Close ends both directions: the peer reads what was written, then EOF.
func (c *memConn) Close() error {
	c.in.close()
	c.out.close()
	return nil
}

type memAddr struct{}

func (memAddr) Network() string { return "memory" }
func (memAddr) String() string  { return "embedded-redis" }

func (c *memConn) LocalAddr() net.Addr  { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr { return memAddr{} }

func (c *memConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *memConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
	// Wake a blocked Read so it sees the new deadline.
	c.in.signal()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
