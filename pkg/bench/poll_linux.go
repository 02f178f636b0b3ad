package bench

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a plain-HTTP target's connections are raw non-blocking sockets
// that one goroutine per worker waits on with epoll (level-triggered): a
// ready socket costs one read(2) into a shared 256 KB buffer, however many
// frames the server coalesced into it, and no goroutine wakes per frame.

// fdLink is a raw socket.
type fdLink struct {
	mu   sync.Mutex // writes, and the close (so a write never hits a reused fd)
	fd   int        // -1 once closed
	shut atomic.Bool
}

func dialLink(u *url.URL, path, token string, timeout time.Duration) (link, []byte, error) {
	if u.Scheme != "http" {
		return dialNet(u, path, token, timeout)
	}
	addr, err := net.ResolveTCPAddr("tcp", hostPort(u))
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %v", err)
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := addr.IP.To4(); ip4 != nil {
		sa = &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte(ip4)}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: addr.Port, Addr: [16]byte(addr.IP.To16())}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: socket: %v", err)
	}
	l := &fdLink{fd: fd}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	deadline := time.Now().Add(timeout)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		l.closeLink()
		return nil, nil, fmt.Errorf("dial: %v", err)
	}
	if err := waitFD(fd, unix.POLLOUT, deadline); err != nil {
		l.closeLink()
		return nil, nil, fmt.Errorf("dial: %v", err)
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		l.closeLink()
		if err == nil {
			err = unix.Errno(e)
		}
		return nil, nil, fmt.Errorf("dial: %v", err)
	}
	rest, err := wsHandshake(blockingFD{l}, u.Host, path, token)
	if err != nil {
		l.closeLink()
		return nil, nil, err
	}
	return l, rest, nil
}

// waitFD polls fd for ev until deadline.
func waitFD(fd int, ev int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timeout")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: ev}}
		n, err := unix.Poll(pfd, int(min(left, time.Second)/time.Millisecond)+1)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return err
		}
		if pfd[0].Revents&(ev|unix.POLLERR|unix.POLLHUP) != 0 {
			return nil
		}
	}
}

func (l *fdLink) write(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	deadline := time.Now().Add(dialTimeout)
	for len(b) > 0 {
		if l.fd < 0 || l.shut.Load() {
			return errClosed
		}
		n, err := unix.Write(l.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch err {
		case nil, unix.EINTR:
		case unix.EAGAIN:
			if err := waitFD(l.fd, unix.POLLOUT, deadline); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

func (l *fdLink) readBlocking(b []byte) (int, error) {
	deadline := time.Now().Add(dialTimeout)
	for {
		n, err := unix.Read(l.fd, b)
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			return 0, errClosed
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := waitFD(l.fd, unix.POLLIN, deadline); err != nil {
				return 0, err
			}
		default:
			return 0, err
		}
	}
}

// closeLink shuts the socket down at once (waking a write waiting on it),
// then closes it once no write holds it.
func (l *fdLink) closeLink() {
	if l.shut.Swap(true) {
		return
	}
	_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
	l.mu.Lock()
	_ = unix.Close(l.fd)
	l.fd = -1
	l.mu.Unlock()
}

// blockingFD reads and writes an fdLink as an io.ReadWriter (the handshake).
type blockingFD struct{ l *fdLink }

func (b blockingFD) Read(p []byte) (int, error)  { return b.l.readBlocking(p) }
func (b blockingFD) Write(p []byte) (int, error) { return len(p), b.l.write(p) }

// poller is a worker's epoll loop.
type poller struct {
	w       *worker
	epfd    int
	byFD    []*rconn // under w.rxMu
	stopped atomic.Bool
	done    chan struct{}
}

func newPoller(w *worker) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %v", err)
	}
	p := &poller{w: w, epfd: epfd, done: make(chan struct{})}
	go p.run()
	return p, nil
}

// add starts c's receive path.
func (p *poller) add(c *rconn) {
	fl, ok := c.link.(*fdLink)
	if !ok {
		go p.w.readLoop(c, c.link.(*netLink))
		return
	}
	fd := fl.fd
	p.w.rxMu.Lock()
	for len(p.byFD) <= fd {
		p.byFD = append(p.byFD, nil)
	}
	p.byFD[fd] = c
	if len(c.pending) > 0 {
		p.w.onData(c, nil, time.Now())
	}
	p.w.rxMu.Unlock()
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		p.w.rxMu.Lock()
		p.w.lost(c)
		p.w.rxMu.Unlock()
	}
}

// remove forgets c before its socket is closed. Called with w.rxMu held.
func (p *poller) remove(c *rconn) {
	fl, ok := c.link.(*fdLink)
	if !ok {
		return
	}
	if fd := fl.fd; fd >= 0 && fd < len(p.byFD) && p.byFD[fd] == c {
		p.byFD[fd] = nil
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

func (p *poller) run() {
	defer close(p.done)
	buf := make([]byte, 256<<10)
	evs := make([]unix.EpollEvent, 1024)
	w := p.w
	// Under load, sleeping a moment between small batches lets each
	// epoll_wait return many ready sockets: a wait per frame would cost as
	// much as the read. Only above hotEvents a second (so the latencies of
	// a lightly loaded run are exact), and it can only make a latency read
	// high, by at most batchWait, never low.
	const hotEvents = 10000
	var window time.Time
	var inWindow, lastWindow int
	for !p.stopped.Load() {
		if now := time.Now(); now.Sub(window) >= 100*time.Millisecond {
			window, lastWindow, inWindow = now, inWindow, 0
		}
		n, err := unix.EpollWait(p.epfd, evs, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if n == 0 {
			continue
		}
		inWindow += n
		w.rxMu.Lock()
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd >= len(p.byFD) || p.byFD[fd] == nil {
				continue
			}
			c := p.byFD[fd]
			for !c.closed {
				m, err := rawRead(fd, buf)
				if m > 0 {
					w.onData(c, buf[:m], time.Now())
					if m == len(buf) {
						continue // there may be more
					}
					break
				}
				if err == unix.EINTR {
					continue
				}
				if err != unix.EAGAIN {
					w.lost(c) // EOF or error
				}
				break
			}
		}
		w.rxMu.Unlock()
		if bw := w.batchWait; bw > 0 && n < len(evs)/16 && lastWindow >= hotEvents/10 {
			ts := unix.NsecToTimespec(int64(bw))
			_ = unix.Nanosleep(&ts, nil)
		}
	}
}

// rawRead is read(2) without telling the scheduler: the socket is
// non-blocking, so the call never waits, and the hand-off a blocking
// syscall costs is saved on every read.
func rawRead(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// stop ends the loop; the sockets stay open.
func (p *poller) stop() {
	p.stopped.Store(true)
	<-p.done
	_ = unix.Close(p.epfd)
}
