package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// A worker holds a share of the run's connections. It runs in a child
// process (chatd bench --worker, so no process holds more than its share of
// open files) or, in tests, in a goroutine; either way it reads commands as
// JSON lines and answers each with one JSON line.

// connSpec is one connection to open: whose session, which room to join, and
// its publisher number (0: it only listens).
type connSpec struct {
	Token string `json:"t"`
	Room  string `json:"r"`
	Pub   int    `json:"p,omitempty"`
}

type command struct {
	ID  int64  `json:"id"`
	Op  string `json:"op"` // init, connect, publish, reset, stats, close
	Arg struct {
		Base        string        `json:"base,omitempty"`
		Conns       []connSpec    `json:"conns,omitempty"`
		BodySize    int           `json:"body_size,omitempty"`
		CollectAcks bool          `json:"collect_acks,omitempty"`
		Concurrency int           `json:"concurrency,omitempty"`
		MaxErrors   int           `json:"max_errors,omitempty"` // connect stops past this many errors; < 0: never
		Step        int           `json:"step,omitempty"`
		Rate        float64       `json:"rate,omitempty"` // sends/s per publisher
		Duration    time.Duration `json:"duration,omitempty"`
	} `json:"arg"`
}

type reply struct {
	ID    int64   `json:"id"`
	Err   string  `json:"err,omitempty"`
	Stats *wstats `json:"stats,omitempty"`
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
	AckedSeqs    map[int][]int64  `json:"acked_seqs,omitempty"`
}

// stepStats is what a reset starts afresh.
type stepStats struct {
	step                                   int
	sent, acked, sendErr                   atomic.Int64
	received, unique, dups, reorders, late atomic.Int64
	lat, ackLat                            *shardedHist
	mu                                     sync.Mutex
	errCodes, ackedByRoom                  map[string]int64
	ackedSeqs                              map[int][]int64
}

func newStepStats(step int) *stepStats {
	return &stepStats{step: step, lat: newShardedHist(), ackLat: newShardedHist(),
		errCodes: map[string]int64{}, ackedByRoom: map[string]int64{}, ackedSeqs: map[int][]int64{}}
}

type wconn struct {
	idx    int
	spec   connSpec
	ws     *websocket.Conn
	seq    int64 // last sequence sent (publisher)
	tracks map[int]*seqTracker
	buf    bytes.Buffer
}

type worker struct {
	outMu sync.Mutex
	enc   *json.Encoder

	base        string
	specs       []connSpec
	bodySize    int
	collectAcks bool

	mu          sync.Mutex
	conns       []*wconn
	members     map[string]int
	connErrors  int
	firstErr    string
	connectHist *shardedHist
	closing     atomic.Bool
	dropped     atomic.Int64

	cur atomic.Pointer[stepStats]
	bg  sync.WaitGroup
}

// RunWorker serves the worker protocol on in and out until a close command
// or the end of in.
func RunWorker(in io.Reader, out io.Writer) error {
	w := &worker{enc: json.NewEncoder(out), members: map[string]int{}, connectHist: newShardedHist()}
	w.cur.Store(newStepStats(0))
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
			w.base, w.specs, w.bodySize, w.collectAcks = c.Arg.Base, c.Arg.Conns, c.Arg.BodySize, c.Arg.CollectAcks
			w.reply(reply{ID: c.ID})
		case "connect":
			w.bg.Add(1)
			go func() {
				defer w.bg.Done()
				w.connect(c.Arg.Concurrency, c.Arg.MaxErrors)
				w.reply(reply{ID: c.ID, Stats: w.stats()})
			}()
		case "publish":
			w.bg.Add(1)
			go func() {
				defer w.bg.Done()
				w.publish(c.Arg.Rate, c.Arg.Duration)
				w.reply(reply{ID: c.ID})
			}()
		case "reset":
			w.cur.Store(newStepStats(c.Arg.Step))
			w.reply(reply{ID: c.ID})
		case "stats":
			w.reply(reply{ID: c.ID, Stats: w.stats()})
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

func (w *worker) stats() *wstats {
	st := w.cur.Load()
	w.mu.Lock()
	s := &wstats{
		Connected: len(w.conns), ConnErrors: w.connErrors, FirstConnErr: w.firstErr,
		Members: make(map[string]int, len(w.members)), ConnectHist: encodeHist(w.connectHist.merged()),
	}
	for k, v := range w.members {
		s.Members[k] = v
	}
	w.mu.Unlock()
	s.Dropped = w.dropped.Load()
	s.Sent, s.Acked, s.SendErrors = st.sent.Load(), st.acked.Load(), st.sendErr.Load()
	s.Tally = Tally{Received: st.received.Load(), Unique: st.unique.Load(), Dups: st.dups.Load(), Reorders: st.reorders.Load(), Late: st.late.Load()}
	s.Lat, s.AckLat = encodeHist(st.lat.merged()), encodeHist(st.ackLat.merged())
	st.mu.Lock()
	s.ErrCodes = copyCounts(st.errCodes)
	s.AckedByRoom = copyCounts(st.ackedByRoom)
	if w.collectAcks {
		s.AckedSeqs = make(map[int][]int64, len(st.ackedSeqs))
		for k, v := range st.ackedSeqs {
			s.AckedSeqs[k] = append([]int64(nil), v...)
		}
	}
	st.mu.Unlock()
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
		next <- i
	}
	close(next)
	wg.Wait()
}

func (w *worker) open(i int, failed *atomic.Int64) {
	spec := w.specs[i]
	t0 := time.Now()
	c, err := dialJoin(w.base, spec)
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
	w.connectHist.record(i, time.Since(t0))
	wc := &wconn{idx: i, spec: spec, ws: c, tracks: map[int]*seqTracker{}}
	w.mu.Lock()
	w.conns = append(w.conns, wc)
	w.members[spec.Room]++
	w.mu.Unlock()
	go w.read(wc)
}

// dialJoin opens a WebSocket and joins spec.Room, returning once the server
// answered joined.
func dialJoin(base string, spec connSpec) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+spec.Token)
	c, res, err := websocket.Dial(ctx, wsURL(base), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if res != nil && res.StatusCode == http.StatusTooManyRequests {
			return nil, fmt.Errorf("dial: 429 (too many connections for one user?): %v", err)
		}
		return nil, fmt.Errorf("dial: %v", err)
	}
	c.SetReadLimit(1 << 22)
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room_id":"`+spec.Room+`"}`)); err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("join: %v", err)
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			c.CloseNow()
			return nil, fmt.Errorf("join: %v", err)
		}
		switch t, _ := stringField(b, "type"); string(t) {
		case "joined":
			return c, nil
		case "error":
			c.CloseNow()
			return nil, fmt.Errorf("join: %s", b)
		}
	}
}

// read consumes one connection's frames until it closes.
func (w *worker) read(c *wconn) {
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err == nil {
			c.buf.Reset()
			_, err = c.buf.ReadFrom(r)
		}
		if err != nil {
			if !w.closing.Load() {
				w.dropped.Add(1)
			}
			return
		}
		w.handle(c, c.buf.Bytes(), time.Now())
	}
}

func (w *worker) handle(c *wconn, b []byte, now time.Time) {
	st := w.cur.Load()
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
			st.late.Add(1)
			return
		}
		st.received.Add(1)
		tr := c.tracks[s.Pub]
		if tr == nil {
			tr = &seqTracker{}
			c.tracks[s.Pub] = tr
		}
		dup, reord := tr.observe(s.Seq)
		if dup {
			st.dups.Add(1)
			return
		}
		st.unique.Add(1)
		if reord {
			st.reorders.Add(1)
		}
		st.lat.record(c.idx, now.Sub(time.Unix(0, s.Sent)))
	case "ack":
		n, ok := stringField(b, "nonce")
		if !ok {
			return
		}
		s, ok := decodeNonce(n)
		if !ok || s.Step != st.step {
			return
		}
		st.acked.Add(1)
		st.ackLat.record(c.idx, now.Sub(time.Unix(0, s.Sent)))
		st.mu.Lock()
		st.ackedByRoom[c.spec.Room]++
		if w.collectAcks {
			st.ackedSeqs[s.Pub] = append(st.ackedSeqs[s.Pub], s.Seq)
		}
		st.mu.Unlock()
	case "error":
		var e struct {
			Code  string `json:"code"`
			Nonce string `json:"nonce"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Nonce != "" {
			st.sendErr.Add(1)
		}
		if e.Code == "" {
			e.Code = "unknown"
		}
		st.mu.Lock()
		st.errCodes[e.Code]++
		st.mu.Unlock()
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
	conns := append([]*wconn(nil), w.conns...)
	w.mu.Unlock()
	interval := time.Duration(float64(time.Second) / rate)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		if c.spec.Pub == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.sendLoop(ctx, c, interval, d)
		}()
	}
	wg.Wait()
}

func (w *worker) sendLoop(ctx context.Context, c *wconn, interval, d time.Duration) {
	st := w.cur.Load()
	start := time.Now().Add(time.Duration(rand.Int64N(int64(interval) + 1)))
	end := time.Now().Add(d)
	var frame []byte
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			return
		}
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		c.seq++
		s := stamp{Step: st.step, Pub: c.spec.Pub, Seq: c.seq, Sent: time.Now().UnixNano()}
		frame = sendFrame(frame[:0], c.spec.Room, s, w.bodySize)
		if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
			st.sendErr.Add(1)
			st.mu.Lock()
			st.errCodes["write_failed"]++
			st.mu.Unlock()
			return
		}
		st.sent.Add(1)
	}
}

func (w *worker) closeAll() {
	w.closing.Store(true)
	w.mu.Lock()
	conns := w.conns
	w.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.ws.CloseNow()
		}()
	}
	wg.Wait()
}
