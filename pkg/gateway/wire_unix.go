//go:build unix

package gateway

import (
	"net"
	"syscall"
)

// rawSocket works on the socket's descriptor directly: tryWrite writes
// once without waiting for it to become writable (Go's sockets are
// non-blocking), and waitReadable waits for input without reading it. Its
// state lives in the struct, so neither allocates; wire.mu serializes
// writes, and only the connection's reader waits.
type rawSocket struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // w.write, bound once
	b     []byte
	n     int
	err   error
	peekB [1]byte
	peek  func(fd uintptr) bool
}

func newRawSocket(nc net.Conn) *rawSocket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawSocket{rc: rc}
	w.fn = w.write
	w.peek = w.peekFn
	return w
}

func (w *rawSocket) write(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			return true
		}
	}
}

func (w *rawSocket) tryWrite(b []byte) (int, error) {
	w.b = b
	err := w.rc.Write(w.fn)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil
	if n < 0 {
		n = 0
	}
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err != nil {
		return n, err
	}
	return n, werr
}

func (w *rawSocket) peekFn(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), w.peekB[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN
}

// waitReadable blocks until the socket has data (or an error or EOF to
// report), peeking without consuming. The connection's reader waits here,
// at a shallow depth, instead of deep inside the library: an idle reader
// then uses little of its stack, and the garbage collector shrinks the
// stack that parsing frames grew.
func (w *rawSocket) waitReadable() {
	_ = w.rc.Read(w.peek)
}
