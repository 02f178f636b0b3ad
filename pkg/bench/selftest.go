package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// The self-test measures the tool's own receive capacity: a trivial local
// sender (a WebSocket server that answers join and writes chatd-shaped
// message frames, one write per frame and connection, as a server that does
// not coalesce) feeds the bench workers, and the workers' CPU time is read
// from /proc. Frames per CPU-second of the workers is what one CPU of the
// tool can take; it must be well above bar 2's 150,000 deliveries/s.

// SelfTestOptions configure a self-test. Zero values take the defaults of
// bar 2: 10,000 connections in 100 rooms, 1,500 messages/s (150,000
// frames/s), for 5 s, over 2 worker processes.
type SelfTestOptions struct {
	Conns      int
	Rooms      int
	Workers    int
	Duration   time.Duration
	Rate       float64       // messages/s in total; each goes to every connection of its room
	Coalesce   int           // frames per write (1: one write per frame and connection, as a server that does not coalesce)
	SenderCPU  int           // pin the sender to this CPU with taskset; < 0: do not
	InProcess  bool          // sender and workers as goroutines (tests)
	CPUProfile string        // write the workers' CPU profiles to FILE.wN
	BatchWait  time.Duration // as Options.BatchWait
	Progress   io.Writer
}

// SelfTestResult is what a self-test measured.
type SelfTestResult struct {
	Conns              int     `json:"conns"`
	Rooms              int     `json:"rooms"`
	Workers            int     `json:"workers"`
	OfferedFramesPerS  float64 `json:"offered_frames_per_sec"`
	Expected           int64   `json:"expected"` // frames the sender wrote
	Unique             int64   `json:"unique"`
	Dups               int64   `json:"duplicates"`
	Lost               int64   `json:"lost"`
	Reads              int64   `json:"reads"`
	Seconds            float64 `json:"seconds"` // from the first write to the last frame received
	FramesPerSec       float64 `json:"frames_per_sec"`
	WorkerCPU          float64 `json:"worker_cpu_seconds"`
	FramesPerCPUSecond float64 `json:"frames_per_cpu_second"` // the capacity of one CPU; 0 when unmeasured (in-process)
	SenderSeconds      float64 `json:"sender_seconds"`        // how long the sender took to write its schedule
	// The sender's own CPU time, and the frames it wrote per CPU-second
	// of it: what one CPU of this machine can write with nothing else to
	// do, one write per frame and connection (--coalesce 1) — the
	// ceiling of a fanout that does not coalesce, against which a
	// server's CPU per delivery can be set. 0 when unmeasured (in-process).
	SenderCPU                float64 `json:"sender_cpu_seconds,omitempty"`
	SenderFramesPerCPUSecond float64 `json:"sender_frames_per_cpu_second,omitempty"`
	Latency                  Latency `json:"latency"`
}

// SelfTest runs the receive-capacity test.
func SelfTest(ctx context.Context, o SelfTestOptions) (*SelfTestResult, error) {
	if err := checkNumbers(numFlag{"--conns", float64(o.Conns)}, numFlag{"--rooms", float64(o.Rooms)},
		numFlag{"--workers", float64(o.Workers)}, numFlag{"--duration", float64(o.Duration)},
		numFlag{"--coalesce", float64(o.Coalesce)}, numFlag{"--rate", o.Rate}); err != nil {
		return nil, err
	}
	if o.Workers > MaxWorkers {
		return nil, fmt.Errorf("--workers: at most %d processes", MaxWorkers)
	}
	if o.Conns <= 0 {
		o.Conns = 10000
	}
	if o.Rooms <= 0 {
		o.Rooms = 100
	}
	o.Rooms = min(o.Rooms, o.Conns)
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 1500
	}
	o.Coalesce = min(max(o.Coalesce, 1), 64)
	if o.BatchWait == 0 {
		o.BatchWait = DefaultBatchWait
	}
	if o.Conns > 200_000 || o.Duration > 10*time.Minute || o.Rate > MaxRate {
		return nil, errors.New("refusing an unbounded self-test: at most 200000 connections, 10m, 1e6 messages/s")
	}
	t0 := time.Now()
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "[selftest %5.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	snd, err := startSender(o.InProcess, o.SenderCPU)
	if err != nil {
		return nil, err
	}
	defer snd.close()
	say("sender on %s; %d connections in %d rooms over %d workers", snd.addr, o.Conns, o.Rooms, o.Workers)
	specs := make([]connSpec, o.Conns)
	for i := range specs {
		specs[i] = connSpec{Token: "selftest", Room: strconv.Itoa(i%o.Rooms + 1)}
	}
	p, err := startPool(ctx, o.Workers, o.InProcess, "http://"+snd.addr, specs, Options{BodySize: 100, CPUProfile: o.CPUProfile, BatchWait: o.BatchWait})
	if err != nil {
		return nil, err
	}
	defer p.close()
	rs, err := p.all(ctx, func(int) command {
		c := command{Op: "connect"}
		c.Arg.Concurrency, c.Arg.MaxErrors = 64, 0
		return c
	})
	if err != nil {
		return nil, err
	}
	ct := merge(rs)
	if ct.Connected != o.Conns {
		return nil, fmt.Errorf("connected %d of %d%s", ct.Connected, o.Conns, firstErr(ct.FirstConnErr))
	}
	say("connected %d", ct.Connected)
	if _, err := p.all(ctx, func(int) command { c := command{Op: "reset"}; c.Arg.Step = 1; return c }); err != nil {
		return nil, err
	}
	cpu0, haveCPU := p.cpuSeconds()
	start := time.Now()
	say("sending %.0f messages/s (%.0f frames/s) for %s", o.Rate, o.Rate*float64(o.Conns)/float64(o.Rooms), o.Duration)
	br, err := snd.blast(ctx, o.Rate, o.Duration, o.Coalesce)
	if err != nil {
		return nil, err
	}
	expected := expectedDeliveries(br.Sent, ct.Members)
	// Drain: until every frame came, or none came for 2 s (30 s at most).
	var t totals
	var seen int64 = -1
	last := time.Now()
	hard := time.Now().Add(30 * time.Second)
	for {
		t = merge(mustCounts(ctx, p))
		if t.Tally.Unique >= expected {
			break
		}
		if t.Tally.Unique != seen {
			seen, last = t.Tally.Unique, time.Now()
		}
		if time.Since(last) > 2*time.Second || time.Now().After(hard) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	end := time.Now()
	t = merge(mustStats(ctx, p))
	if t.Tally.Unique < expected {
		end = last
	}
	res := &SelfTestResult{Conns: o.Conns, Rooms: o.Rooms, Workers: o.Workers,
		OfferedFramesPerS: o.Rate * float64(o.Conns) / float64(o.Rooms),
		Expected:          expected, Unique: t.Tally.Unique, Dups: t.Tally.Dups, Reads: t.Reads,
		Seconds: end.Sub(start).Seconds(), SenderSeconds: br.Seconds, Latency: summarize(t.Lat)}
	res.Lost = max(0, expected-t.Tally.Unique)
	if !o.InProcess && br.CPU > 0 {
		res.SenderCPU = br.CPU
		res.SenderFramesPerCPUSecond = float64(expected) / br.CPU
	}
	res.FramesPerSec = float64(res.Unique) / res.Seconds
	if cpu1, ok := p.cpuSeconds(); ok && haveCPU {
		res.WorkerCPU = cpu1 - cpu0
		if res.WorkerCPU > 0 {
			res.FramesPerCPUSecond = float64(res.Unique) / res.WorkerCPU
		}
	}
	return res, nil
}

// WriteSelfTest prints a self-test result.
func WriteSelfTest(w io.Writer, r *SelfTestResult) {
	fmt.Fprintf(w, "receive self-test: %d connections in %d rooms, %d worker processes\n", r.Conns, r.Rooms, r.Workers)
	fmt.Fprintf(w, "  offered   %10.0f frames/s (sender wrote its schedule in %.2fs)\n", r.OfferedFramesPerS, r.SenderSeconds)
	fmt.Fprintf(w, "  received  %10d of %d frames (lost %d, dup %d) in %.2fs: %.0f frames/s, %.2f frames per read\n",
		r.Unique, r.Expected, r.Lost, r.Dups, r.Seconds, r.FramesPerSec, float64(r.Unique)/max(1, float64(r.Reads)))
	fmt.Fprintf(w, "  latency   p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms (sender and receiver share the machine)\n",
		r.Latency.P50, r.Latency.P99, r.Latency.P999, r.Latency.Max)
	if r.FramesPerCPUSecond > 0 {
		fmt.Fprintf(w, "  workers used %.2f CPU-seconds: capacity %.0f frames per CPU-second (%.2fx bar 2's 150,000/s)\n",
			r.WorkerCPU, r.FramesPerCPUSecond, r.FramesPerCPUSecond/Bar2Deliveries)
	} else {
		fmt.Fprintf(w, "  worker CPU not measured (workers in this process, or no /proc)\n")
	}
	if r.SenderFramesPerCPUSecond > 0 {
		fmt.Fprintf(w, "  sender used %.2f CPU-seconds: %.2f µs per frame, %.0f frames per CPU-second (%.2fx bar 2's 150,000/s; the ceiling of a fanout that writes once per frame on one CPU)\n",
			r.SenderCPU, 1e6/r.SenderFramesPerCPUSecond, r.SenderFramesPerCPUSecond, r.SenderFramesPerCPUSecond/Bar2Deliveries)
	}
}

// senderHandle drives a sender: a child process (chatd bench --sender) or,
// in tests, a goroutine, speaking JSON lines like a worker.
type senderHandle struct {
	addr  string
	enc   *json.Encoder
	dec   *json.Decoder
	stdin io.Closer
	wait  func() error
}

type blastCmd struct {
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	Coalesce int           `json:"coalesce"`
}

type blastReply struct {
	Addr    string           `json:"addr,omitempty"`
	Sent    map[string]int64 `json:"sent,omitempty"` // messages by room
	Seconds float64          `json:"seconds"`
	CPU     float64          `json:"cpu_seconds,omitempty"` // the sender process's CPU time over the blast
	Err     string           `json:"err,omitempty"`
}

func startSender(inProcess bool, cpu int) (*senderHandle, error) {
	var args []string
	if !inProcess {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args = []string{exe, "bench", "--sender"}
		if cpu >= 0 {
			if ts, err := exec.LookPath("taskset"); err == nil {
				args = append([]string{ts, "-c", strconv.Itoa(cpu)}, args...)
			}
		}
	}
	c, err := startChild("sender", args, RunSender)
	if err != nil {
		return nil, err
	}
	h := &senderHandle{enc: json.NewEncoder(c.in), dec: json.NewDecoder(c.out), stdin: c.in, wait: c.wait}
	var r blastReply
	if err := h.dec.Decode(&r); err != nil || r.Addr == "" {
		h.close()
		return nil, fmt.Errorf("sender did not start: %v %s", err, r.Err)
	}
	h.addr = r.Addr
	return h, nil
}

func (h *senderHandle) blast(ctx context.Context, rate float64, d time.Duration, coalesce int) (blastReply, error) {
	if err := h.enc.Encode(blastCmd{Rate: rate, Duration: d, Coalesce: coalesce}); err != nil {
		return blastReply{}, err
	}
	ch := make(chan error, 1)
	var r blastReply
	go func() { ch <- h.dec.Decode(&r) }()
	select {
	case err := <-ch:
		if err == nil && r.Err != "" {
			err = errors.New(r.Err)
		}
		return r, err
	case <-ctx.Done():
		return r, ctx.Err()
	}
}

func (h *senderHandle) close() {
	h.stdin.Close()
	_ = h.wait()
}

// RunSender is the self-test's sender: it listens on a loopback port,
// announces it, and for every blast command writes message frames to the
// joined connections of each room at the given total rate.
func RunSender(in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = enc.Encode(blastReply{Err: err.Error()})
		return err
	}
	s := &sender{rooms: map[string][]*sconn{}}
	go s.accept(ln)
	defer s.closeAll(ln)
	if err := enc.Encode(blastReply{Addr: ln.Addr().String()}); err != nil {
		return err
	}
	dec := json.NewDecoder(bufio.NewReader(in))
	for step := 1; ; step++ {
		var c blastCmd
		if err := dec.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := enc.Encode(s.blast(step, c.Rate, min(c.Duration, 10*time.Minute), max(c.Coalesce, 1))); err != nil {
			return err
		}
	}
}

type sender struct {
	mu    sync.Mutex
	rooms map[string][]*sconn
	conns []net.Conn
}

type sconn struct {
	mu sync.Mutex
	nc net.Conn
}

func (s *sender) accept(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		go s.serve(nc)
	}
}

func (s *sender) closeAll(ln net.Listener) {
	ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// serve upgrades one connection and answers its joins; everything else the
// client sends (pongs) is read and dropped.
func (s *sender) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		_, _ = io.WriteString(nc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	c := &sconn{nc: nc}
	c.mu.Lock()
	_, err = io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(key)+"\r\n\r\n")
	c.mu.Unlock()
	if err != nil {
		return
	}
	var buf []byte
	rb := make([]byte, 4096)
	for {
		n, err := br.Read(rb)
		if err != nil {
			return
		}
		buf = append(buf, rb[:n]...)
		for {
			_, op, p, m, err := nextFrame(buf)
			if err != nil {
				return
			}
			if m == 0 {
				break
			}
			if op == opText {
				if t, _ := stringField(p, "type"); string(t) == "join" {
					room, _ := stringField(p, "room_id")
					s.mu.Lock()
					s.rooms[string(room)] = append(s.rooms[string(room)], c)
					s.mu.Unlock()
					c.mu.Lock()
					_, err = nc.Write(appendServerFrame(nil, opText, []byte(`{"type":"joined","room_id":"`+string(room)+`"}`)))
					c.mu.Unlock()
					if err != nil {
						return
					}
				}
			}
			buf = buf[m:]
		}
	}
}

// blast writes rate messages a second in total for d, spread over the
// rooms, each to every connection in its room, k frames to a write.
func (s *sender) blast(step int, rate float64, d time.Duration, k int) blastReply {
	s.mu.Lock()
	rooms := make(map[string][]*sconn, len(s.rooms))
	for k, v := range s.rooms {
		rooms[k] = append([]*sconn(nil), v...)
	}
	s.mu.Unlock()
	if len(rooms) == 0 || rate <= 0 {
		return blastReply{Err: "nothing to send"}
	}
	interval := time.Duration(float64(time.Second) * float64(len(rooms)) / rate)
	cpu0, cpuErr := procCPU(os.Getpid())
	start := time.Now()
	end := start.Add(d)
	// One deadline for the whole blast (a receiver that stops reading
	// cannot hang it), not one per write: the sender is the machine's
	// floor for one-write-per-frame fanout, so it does nothing else.
	for _, members := range rooms {
		for _, c := range members {
			c.mu.Lock()
			_ = c.nc.SetWriteDeadline(end.Add(30 * time.Second))
			c.mu.Unlock()
		}
	}
	var mu sync.Mutex
	sent := map[string]int64{}
	var wg sync.WaitGroup
	pub := 0
	for room, members := range rooms {
		pub++
		wg.Add(1)
		go func(pub int) {
			defer wg.Done()
			first := start.Add(time.Duration(int64(interval) * int64(pub) / int64(len(rooms))))
			var n int64
			var frame []byte
			for i := int64(0); ; i++ {
				at := first.Add(time.Duration(i) * interval)
				if !at.Before(end) {
					break
				}
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				frame = appendServerFrame(frame, opText, messageFrame(stamp{Step: step, Pub: pub, Seq: i + 1, Sent: time.Now().UnixNano()}))
				n++
				if n%int64(k) != 0 && !at.Add(interval).After(end) {
					continue
				}
				for _, c := range members {
					c.mu.Lock()
					_, _ = c.nc.Write(frame)
					c.mu.Unlock()
				}
				frame = frame[:0]
			}
			mu.Lock()
			sent[room] = n
			mu.Unlock()
		}(pub)
	}
	wg.Wait()
	r := blastReply{Sent: sent, Seconds: time.Since(start).Seconds()}
	if cpu1, err := procCPU(os.Getpid()); err == nil && cpuErr == nil {
		r.CPU = cpu1 - cpu0
	}
	return r
}
