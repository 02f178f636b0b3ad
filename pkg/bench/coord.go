package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// handle is the coordinator's end of one worker.
type handle struct {
	mu      sync.Mutex
	enc     *json.Encoder
	nextID  int64
	pending map[int64]chan reply
	dead    chan struct{}
	deadErr error
	wait    func() error
	stdin   io.Closer
	pid     int // the child process; 0 in this process
}

// startWorker runs a worker: a child process re-executing this binary with
// `bench --worker` when exe is set, else a goroutine (tests).
func startWorker(exe string) (*handle, error) {
	var args []string
	if exe != "" {
		args = []string{exe, "bench", "--worker"}
	}
	c, err := startChild("worker", args, RunWorker)
	if err != nil {
		return nil, err
	}
	h := &handle{pending: map[int64]chan reply{}, dead: make(chan struct{}), wait: c.wait, pid: c.pid}
	h.enc, h.stdin = json.NewEncoder(c.in), c.in
	go h.readLoop(c.out)
	return h, nil
}

// child is a worker or a sender speaking JSON lines on its stdin and stdout.
type child struct {
	in   io.WriteCloser
	out  io.Reader
	wait func() error
	pid  int // 0 in this process
}

// startChild runs the process args, or run on a goroutine over pipes when
// args is empty (tests).
func startChild(name string, args []string, run func(io.Reader, io.Writer) error) (*child, error) {
	if len(args) == 0 {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := run(inR, outW)
			outW.CloseWithError(io.EOF)
			inR.Close()
			done <- err
		}()
		return &child{in: inW, out: outR, wait: func() error { return <-done }}, nil
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &child{in: in, out: out, wait: cmd.Wait, pid: cmd.Process.Pid}, nil
}

func (h *handle) readLoop(out io.Reader) {
	dec := json.NewDecoder(bufio.NewReaderSize(out, 1<<20))
	for {
		var r reply
		if err := dec.Decode(&r); err != nil {
			h.mu.Lock()
			h.deadErr = err
			h.mu.Unlock()
			close(h.dead)
			return
		}
		h.mu.Lock()
		ch := h.pending[r.ID]
		delete(h.pending, r.ID)
		h.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// call sends c and waits for its answer.
func (h *handle) call(ctx context.Context, c command) (reply, error) {
	ch := make(chan reply, 1)
	h.mu.Lock()
	h.nextID++
	c.ID = h.nextID
	h.pending[c.ID] = ch
	err := h.enc.Encode(c)
	h.mu.Unlock()
	if err != nil {
		return reply{}, fmt.Errorf("worker: %w", err)
	}
	select {
	case r := <-ch:
		if r.Err != "" {
			return r, errors.New("worker: " + r.Err)
		}
		return r, nil
	case <-h.dead:
		return reply{}, fmt.Errorf("worker exited: %v", h.deadErr)
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

func (h *handle) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = h.call(ctx, command{Op: "close"})
	h.stdin.Close()
	_ = h.wait()
}

// pool is every worker of a run.
type pool []*handle

func (p pool) all(ctx context.Context, mk func(i int) command) ([]reply, error) {
	out := make([]reply, len(p))
	errs := make([]error, len(p))
	var wg sync.WaitGroup
	for i, h := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = h.call(ctx, mk(i))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (p pool) op(ctx context.Context, op string) ([]reply, error) {
	return p.all(ctx, func(int) command { return command{Op: op} })
}

func (p pool) close() {
	var wg sync.WaitGroup
	for _, h := range p {
		wg.Add(1)
		go func() { defer wg.Done(); h.close() }()
	}
	wg.Wait()
}

// cpuSeconds is the CPU time (user and system) the worker processes have
// used so far; ok is false when they run in this process or /proc is not
// there.
func (p pool) cpuSeconds() (secs float64, ok bool) {
	for _, h := range p {
		if h.pid == 0 {
			return 0, false
		}
		s, err := procCPU(h.pid)
		if err != nil {
			return 0, false
		}
		secs += s
	}
	return secs, len(p) > 0
}

// procCPU reads utime+stime of /proc/PID/stat (clock ticks of 1/100 s, as
// on every Linux this runs on).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(b []byte) (float64, error) {
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return float64(ut+st) / 100, nil
}

// startPool starts n workers (child processes unless inProcess) and hands
// each its share of specs, round robin.
func startPool(ctx context.Context, n int, inProcess bool, base string, specs []connSpec, o Options) (pool, error) {
	exe := ""
	if !inProcess {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	var p pool
	for range n {
		h, err := startWorker(exe)
		if err != nil {
			p.close()
			return nil, err
		}
		p = append(p, h)
	}
	share := make([][]connSpec, n)
	for i, s := range specs {
		share[i%n] = append(share[i%n], s)
	}
	if _, err := p.all(ctx, func(i int) command {
		c := command{Op: "init"}
		c.Arg.Base, c.Arg.Conns, c.Arg.BodySize = base, share[i], o.BodySize
		c.Arg.CollectAcks = o.Scenario == "durable" || o.Scenario == "persist"
		c.Arg.BatchWait = o.BatchWait
		if o.CPUProfile != "" && exe != "" {
			c.Arg.CPUProfile = fmt.Sprintf("%s.w%d", o.CPUProfile, i)
		}
		return c
	}); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// totals is every worker's stats added up.
type totals struct {
	Connected, ConnErrors int
	FirstConnErr          string
	Dropped               int64
	Members               map[string]int
	Sent, Acked, SendErr  int64
	Reads                 int64
	ErrCodes              map[string]int64
	AckedByRoom           map[string]int64
	Tally                 Tally
	Connect, Lat, AckLat  *hdrhistogram.Histogram
}

func merge(rs []reply) totals {
	t := totals{Members: map[string]int{}, ErrCodes: map[string]int64{}, AckedByRoom: map[string]int64{},
		Connect: newHist(), Lat: newHist(), AckLat: newHist()}
	for _, r := range rs {
		s := r.Stats
		if s == nil {
			continue
		}
		t.Connected += s.Connected
		t.ConnErrors += s.ConnErrors
		if t.FirstConnErr == "" {
			t.FirstConnErr = s.FirstConnErr
		}
		t.Dropped += s.Dropped
		for k, v := range s.Members {
			t.Members[k] += v
		}
		t.Sent += s.Sent
		t.Acked += s.Acked
		t.SendErr += s.SendErrors
		t.Reads += s.Reads
		for k, v := range s.ErrCodes {
			t.ErrCodes[k] += v
		}
		for k, v := range s.AckedByRoom {
			t.AckedByRoom[k] += v
		}
		t.Tally.Received += s.Tally.Received
		t.Tally.Unique += s.Tally.Unique
		t.Tally.Dups += s.Tally.Dups
		t.Tally.Reorders += s.Tally.Reorders
		t.Tally.Late += s.Tally.Late
		t.Connect.Merge(decodeHist(s.ConnectHist))
		t.Lat.Merge(decodeHist(s.Lat))
		t.AckLat.Merge(decodeHist(s.AckLat))
	}
	t.Tally.Expected = expectedDeliveries(t.AckedByRoom, t.Members)
	return t
}
