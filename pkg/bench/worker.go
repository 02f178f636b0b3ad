package bench

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// A worker holds a share of the run's connections. It runs in a child
// process (chatd bench --worker, so no process holds more than its share of
// open files) or, in tests, in a goroutine; either way it reads commands as
// JSON lines and answers each with one JSON line.
//
// The receive path is built to cost little per frame: on Linux one
// goroutine per worker waits on epoll for all its sockets and parses each
// read straight out of one large buffer (several frames the server wrote at
// once come out of one read), taking only the fields it needs; elsewhere one
// goroutine per connection reads into its own buffer. Either way the
// counters and histograms are the worker's own, guarded by one lock taken
// once per read batch, and the coordinator merges the workers' at the end.

// connSpec is one connection to open: whose session, which room to join, and
// its publisher number (0: it only listens).
type connSpec struct {
	Token string `json:"t"`
	Room  string `json:"r"`
	Pub   int    `json:"p,omitempty"`
}

type command struct {
	ID  int64  `json:"id"`
	Op  string `json:"op"` // init, connect, publish, reset, stats, acks, close
	Arg struct {
		Base        string        `json:"base,omitempty"`
		Conns       []connSpec    `json:"conns,omitempty"`
		BodySize    int           `json:"body_size,omitempty"`
		CollectAcks bool          `json:"collect_acks,omitempty"`
		CPUProfile  string        `json:"cpu_profile,omitempty"`
		BatchWait   time.Duration `json:"batch_wait,omitempty"` // < 0: none
		Counts      bool          `json:"counts,omitempty"`     // stats: counters only, no histograms (cheap, for polling)
		Concurrency int           `json:"concurrency,omitempty"`
		MaxErrors   int           `json:"max_errors,omitempty"` // connect stops past this many errors; < 0: never
		Step        int           `json:"step,omitempty"`
		Rate        float64       `json:"rate,omitempty"` // sends/s per publisher
		Duration    time.Duration `json:"duration,omitempty"`
	} `json:"arg"`
}

type reply struct {
	ID    int64    `json:"id"`
	Err   string   `json:"err,omitempty"`
	Stats *wstats  `json:"stats,omitempty"`
	Acks  []ackRec `json:"acks,omitempty"`
	PID   int      `json:"pid,omitempty"`
}

// ackRec is one acked send: who sent it and the ID the server gave it.
type ackRec struct {
	Pub  int    `json:"p"`
	Seq  int64  `json:"s"`
	ID   string `json:"i"`
	Room string `json:"r"`
}

// wstats is a worker's counters: the connection ones for the whole run, the
// others since the last reset (the current step).
type wstats struct {
	Connected    int              `json:"connected"`
	ConnErrors   int              `json:"conn_errors"`
	FirstConnErr string           `json:"first_conn_err,omitempty"`
	Dropped      int64            `json:"dropped"` // connections the server closed
	Members      map[string]int   `json:"members,omitempty"`
	ConnectHist  string           `json:"connect_hist,omitempty"`
	Sent         int64            `json:"sent"`
	Acked        int64            `json:"acked"`
	SendErrors   int64            `json:"send_errors"`
	ErrCodes     map[string]int64 `json:"err_codes,omitempty"`
	AckedByRoom  map[string]int64 `json:"acked_by_room,omitempty"`
	Tally        Tally            `json:"tally"`
	Lat          string           `json:"lat,omitempty"`
	AckLat       string           `json:"ack_lat,omitempty"`
	Reads        int64            `json:"reads"`
}

// rxState is what the receive path accounts, since the last reset. Guarded
// by worker.rxMu.
type rxState struct {
	step                                   int
	received, unique, dups, reorders, late int64
	acked, sendErr                         int64
	reads                                  int64 // socket reads that carried data
	lat, ackLat                            *hdrhistogram.Histogram
	errCodes, ackedByRoom                  map[string]int64
	acks                                   []ackRec
}

func newRxState(step int) *rxState {
	return &rxState{step: step, lat: newHist(), ackLat: newHist(), errCodes: map[string]int64{}, ackedByRoom: map[string]int64{}}
}

// rconn is one connection.
type rconn struct {
	spec connSpec
	link // the socket: platform-specific, with its own write lock

	// Receive side: owned by the receive path under worker.rxMu.
	frameConn
	tracks map[int]*seqTracker
	closed bool

	seq int64 // last sequence sent (its publisher goroutine only)
}

type worker struct {
	outMu sync.Mutex
	enc   *json.Encoder

	u           *url.URL
	specs       []connSpec
	bodySize    int
	collectAcks bool
	prof        *os.File
	batchWait   time.Duration

	mu          sync.Mutex
	conns       []*rconn
	members     map[string]int
	connErrors  int
	firstErr    string
	connectHist *hdrhistogram.Histogram
	closing     atomic.Bool

	sent    atomic.Int64 // since the last reset
	stepNow atomic.Int64

	rxMu    sync.Mutex
	rx      *rxState
	dropped int64 // under rxMu
	poll    *poller

	bg sync.WaitGroup
}

func newWorker(out io.Writer) *worker {
	w := &worker{enc: json.NewEncoder(out), members: map[string]int{}, connectHist: newHist(), rx: newRxState(0)}
	return w
}

// RunWorker serves the worker protocol on in and out until a close command
// or the end of in.
func RunWorker(in io.Reader, out io.Writer) error {
	w := newWorker(out)
	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<20))
	for {
		var c command
		if err := dec.Decode(&c); err != nil {
			w.closeAll()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch c.Op {
		case "init":
			u, err := url.Parse(c.Arg.Base)
			if err != nil {
				w.reply(reply{ID: c.ID, Err: err.Error()})
				continue
			}
			w.u, w.specs, w.bodySize, w.collectAcks = u, c.Arg.Conns, c.Arg.BodySize, c.Arg.CollectAcks
			w.batchWait = c.Arg.BatchWait
			if c.Arg.CPUProfile != "" {
				f, err := os.Create(c.Arg.CPUProfile)
				if err == nil {
					err = pprof.StartCPUProfile(f)
				}
				if err != nil {
					w.reply(reply{ID: c.ID, Err: "cpu profile: " + err.Error()})
					continue
				}
				w.prof = f
			}
			if w.poll == nil {
				p, err := newPoller(w)
				if err != nil {
					w.reply(reply{ID: c.ID, Err: err.Error()})
					continue
				}
				w.poll = p
			}
			w.reply(reply{ID: c.ID, PID: os.Getpid()})
		case "connect":
			w.bg.Add(1)
			go func() {
				defer w.bg.Done()
				w.connect(c.Arg.Concurrency, c.Arg.MaxErrors)
				w.reply(reply{ID: c.ID, Stats: w.stats(true)})
			}()
		case "publish":
			w.bg.Add(1)
			go func() {
				defer w.bg.Done()
				w.publish(c.Arg.Rate, c.Arg.Duration)
				w.reply(reply{ID: c.ID})
			}()
		case "reset":
			w.rxMu.Lock()
			w.rx = newRxState(c.Arg.Step)
			w.rxMu.Unlock()
			w.stepNow.Store(int64(c.Arg.Step))
			w.sent.Store(0)
			w.reply(reply{ID: c.ID})
		case "stats":
			w.reply(reply{ID: c.ID, Stats: w.stats(!c.Arg.Counts)})
		case "acks":
			w.rxMu.Lock()
			acks := append([]ackRec(nil), w.rx.acks...)
			w.rxMu.Unlock()
			w.reply(reply{ID: c.ID, Acks: acks})
		case "close":
			w.closeAll()
			w.reply(reply{ID: c.ID})
			return nil
		default:
			w.reply(reply{ID: c.ID, Err: "unknown op " + c.Op})
		}
	}
}

func (w *worker) reply(r reply) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.enc.Encode(r)
}

// stats snapshots the worker's totals. With hists false it leaves out the
// histograms, whose encoding costs about a millisecond each (for polling).
func (w *worker) stats(hists bool) *wstats {
	w.mu.Lock()
	s := &wstats{Connected: len(w.conns), ConnErrors: w.connErrors, FirstConnErr: w.firstErr, Members: make(map[string]int, len(w.members))}
	for k, v := range w.members {
		s.Members[k] = v
	}
	if hists {
		s.ConnectHist = encodeHist(w.connectHist)
	}
	w.mu.Unlock()
	s.Sent = w.sent.Load()
	w.rxMu.Lock()
	st := w.rx
	s.Dropped = w.dropped
	s.Acked, s.SendErrors, s.Reads = st.acked, st.sendErr, st.reads
	s.Tally = Tally{Received: st.received, Unique: st.unique, Dups: st.dups, Reorders: st.reorders, Late: st.late}
	if hists {
		s.Lat, s.AckLat = encodeHist(st.lat), encodeHist(st.ackLat)
	}
	s.ErrCodes = copyCounts(st.errCodes)
	s.AckedByRoom = copyCounts(st.ackedByRoom)
	w.rxMu.Unlock()
	return s
}

func copyCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// connect opens every connection and joins its room, concurrency at a time,
// stopping early once more than maxErrors failed (maxErrors < 0: never).
func (w *worker) connect(concurrency, maxErrors int) {
	if concurrency < 1 {
		concurrency = 1
	}
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				w.open(i, &failed)
			}
		}()
	}
	for i := range w.specs {
		if maxErrors >= 0 && failed.Load() > int64(maxErrors) {
			break
		}
		if w.closing.Load() {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

func (w *worker) open(i int, failed *atomic.Int64) {
	spec := w.specs[i]
	t0 := time.Now()
	c, err := w.dialJoin(spec)
	if err != nil {
		failed.Add(1)
		w.mu.Lock()
		w.connErrors++
		if w.firstErr == "" {
			w.firstErr = err.Error()
		}
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	record(w.connectHist, time.Since(t0))
	w.conns = append(w.conns, c)
	w.members[spec.Room]++
	w.mu.Unlock()
	w.poll.add(c)
}

const dialTimeout = 30 * time.Second

// dialJoin opens a WebSocket and joins spec.Room, returning once the server
// answered joined. Frames that came after joined stay in the connection's
// pending bytes for the receive path.
func (w *worker) dialJoin(spec connSpec) (*rconn, error) {
	l, rest, err := dialLink(w.u, "/api/v1/ws", spec.Token, dialTimeout)
	if err != nil {
		return nil, err
	}
	c := &rconn{spec: spec, link: l, tracks: map[int]*seqTracker{}}
	fail := func(what string, err error) (*rconn, error) {
		c.closeLink()
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if err := c.write(appendClientFrame(nil, opText, []byte(`{"type":"join","room_id":"`+spec.Room+`"}`))); err != nil {
		return fail("join", err)
	}
	buf := rest
	rb := make([]byte, 4096)
	for {
		for {
			fin, op, p, n, err := nextFrame(buf)
			if err != nil {
				return fail("join", err)
			}
			if n == 0 {
				break
			}
			buf = buf[n:]
			switch {
			case op == opPing:
				if err := c.write(appendClientFrame(nil, opPong, p)); err != nil {
					return fail("join", err)
				}
			case op == opClose:
				return fail("join", fmt.Errorf("closed by the server: %q", p))
			case op == opText && fin:
				switch t, _ := stringField(p, "type"); string(t) {
				case "joined":
					c.pending = append([]byte(nil), buf...)
					return c, nil
				case "error":
					return fail("join", errors.New(string(p)))
				}
			}
		}
		n, err := c.readBlocking(rb)
		if err != nil {
			return fail("join", err)
		}
		buf = append(buf, rb[:n]...)
	}
}

// onData is the receive path: the bytes read from c at now. Called with
// w.rxMu held.
func (w *worker) onData(c *rconn, data []byte, now time.Time) {
	if c.closed {
		return
	}
	st := w.rx
	if len(data) > 0 {
		st.reads++
	}
	err := c.feed(data, func(op byte, p []byte) {
		if op == opText {
			w.handle(st, c, p, now)
		}
	}, func(op byte, p []byte) {
		switch op {
		case opPing:
			_ = c.write(appendClientFrame(make([]byte, 0, 16+len(p)), opPong, p))
		case opClose:
			w.lost(c)
		}
	})
	if err != nil {
		w.lost(c)
	}
}

// lost closes c after a read error, a close frame or a protocol error.
// Called with w.rxMu held.
func (w *worker) lost(c *rconn) {
	if c.closed {
		return
	}
	c.closed = true
	if !w.closing.Load() {
		w.dropped++
	}
	w.poll.remove(c)
	c.closeLink()
}

// handle accounts one text frame. Called with w.rxMu held.
func (w *worker) handle(st *rxState, c *rconn, b []byte, now time.Time) {
	t, _ := stringField(b, "type")
	switch string(t) {
	case "message":
		body, ok := stringField(b, "body")
		if !ok {
			return
		}
		s, ok := decodeBody(body)
		if !ok {
			return
		}
		if s.Step != st.step {
			st.late++
			return
		}
		st.received++
		tr := c.tracks[s.Pub]
		if tr == nil {
			tr = &seqTracker{}
			c.tracks[s.Pub] = tr
		}
		dup, reord := tr.observe(s.Seq)
		if dup {
			st.dups++
			return
		}
		st.unique++
		if reord {
			st.reorders++
		}
		record(st.lat, now.Sub(time.Unix(0, s.Sent)))
	case "ack":
		n, ok := stringField(b, "nonce")
		if !ok {
			return
		}
		s, ok := decodeNonce(n)
		if !ok || s.Step != st.step {
			return
		}
		st.acked++
		record(st.ackLat, now.Sub(time.Unix(0, s.Sent)))
		st.ackedByRoom[c.spec.Room]++
		if w.collectAcks {
			id, _ := stringField(b, "id") // the message's: the frame has no other "id"
			st.acks = append(st.acks, ackRec{Pub: s.Pub, Seq: s.Seq, ID: string(id), Room: c.spec.Room})
		}
	case "error":
		var e struct {
			Code  string `json:"code"`
			Nonce string `json:"nonce"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Nonce != "" {
			st.sendErr++
		}
		if e.Code == "" {
			e.Code = "unknown"
		}
		st.errCodes[e.Code]++
	}
}

// publish makes every publisher connection send rate messages a second for
// d, each on its own schedule (open loop: a slow send does not lower the
// offered rate, the next ones go out at once).
func (w *worker) publish(rate float64, d time.Duration) {
	if rate <= 0 || d <= 0 {
		return
	}
	w.mu.Lock()
	conns := append([]*rconn(nil), w.conns...)
	w.mu.Unlock()
	interval := time.Duration(float64(time.Second) / rate)
	var wg sync.WaitGroup
	for _, c := range conns {
		if c.spec.Pub == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.sendLoop(c, interval, d)
		}()
	}
	wg.Wait()
}

func (w *worker) sendLoop(c *rconn, interval, d time.Duration) {
	step := int(w.stepNow.Load())
	start := time.Now().Add(time.Duration(rand.Int64N(int64(interval) + 1)))
	end := time.Now().Add(d)
	var frame, ws []byte
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) || w.closing.Load() {
			return
		}
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		c.seq++
		s := stamp{Step: step, Pub: c.spec.Pub, Seq: c.seq, Sent: time.Now().UnixNano()}
		frame = sendFrame(frame[:0], c.spec.Room, s, w.bodySize)
		ws = appendClientFrame(ws[:0], opText, frame)
		if err := c.write(ws); err != nil {
			w.rxMu.Lock()
			w.rx.sendErr++
			w.rx.errCodes["write_failed"]++
			w.rxMu.Unlock()
			return
		}
		w.sent.Add(1)
	}
}

func (w *worker) closeAll() {
	if w.closing.Swap(true) {
		return
	}
	w.mu.Lock()
	conns := w.conns
	w.mu.Unlock()
	if w.poll != nil {
		w.poll.stop()
	}
	for _, c := range conns {
		c.closeLink()
	}
	if w.prof != nil {
		pprof.StopCPUProfile()
		w.prof.Close()
		w.prof = nil
	}
}

var errClosed = errors.New("connection closed")

// hostPort is u's host with the default port filled in.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return u.Host + ":443"
	}
	return u.Host + ":80"
}

// link is one connection's socket.
type link interface {
	// write sends b whole (the caller's frames); safe for concurrent use.
	write(b []byte) error
	// readBlocking reads what is there, waiting at most dialTimeout (the
	// handshake and join only).
	readBlocking(b []byte) (int, error)
	closeLink()
}

// netLink is a link over a net.Conn: TLS targets, and every target where
// there is no epoll. Its receive path is one goroutine (readLoop).
type netLink struct {
	mu sync.Mutex
	nc net.Conn
}

func (l *netLink) write(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.nc.SetWriteDeadline(time.Now().Add(dialTimeout))
	_, err := l.nc.Write(b)
	return err
}

func (l *netLink) readBlocking(b []byte) (int, error) {
	_ = l.nc.SetReadDeadline(time.Now().Add(dialTimeout))
	defer l.nc.SetReadDeadline(time.Time{})
	return l.nc.Read(b)
}

func (l *netLink) closeLink() { _ = l.nc.Close() }

// dialNet opens a netLink and upgrades it.
func dialNet(u *url.URL, path, token string, timeout time.Duration) (link, []byte, error) {
	d := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	var err error
	if u.Scheme == "https" {
		nc, err = tls.DialWithDialer(d, "tcp", hostPort(u), &tls.Config{ServerName: u.Hostname()})
	} else {
		nc, err = d.Dial("tcp", hostPort(u))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %v", err)
	}
	l := &netLink{nc: nc}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	rest, err := wsHandshake(nc, u.Host, path, token)
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return l, rest, nil
}

// readLoop is a netLink's receive path.
func (w *worker) readLoop(c *rconn, l *netLink) {
	buf := make([]byte, 16<<10)
	w.rxMu.Lock()
	if len(c.pending) > 0 {
		w.onData(c, nil, time.Now())
	}
	w.rxMu.Unlock()
	for {
		n, err := l.nc.Read(buf)
		w.rxMu.Lock()
		if n > 0 {
			w.onData(c, buf[:n], time.Now())
		}
		if err != nil {
			w.lost(c)
		}
		done := c.closed
		w.rxMu.Unlock()
		if done {
			return
		}
	}
}
