// Package bench is `chatd bench`: a load generator that drives a running
// chatd through its public API only (REST to set up users and rooms,
// WebSockets to join, send and receive) and measures deliveries/s, loss,
// duplicates, reordering, latency percentiles and the server's memory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenarios are the runs bench knows.
var Scenarios = []string{"idle", "fanout", "chat", "connect", "durable", "persist"}

// DefaultBatchWait is the receive loop's pause between small batches under
// load: latencies can read up to this much high (1% of bar 2's 50 ms
// bound), never low, and it halves the tool's CPU per frame when every
// frame comes in its own read.
const DefaultBatchWait = 500 * time.Microsecond

// Options configure one run. Zero values take the scenario's defaults.
type Options struct {
	Scenario    string
	URL         string
	AllowRemote bool
	// MetricsURL is the server's /metrics, when http.metrics_addr put it
	// on a listener of its own; empty: URL + "/metrics".
	MetricsURL string
	Bar        bool // take the shape of the scenario's bar in issue 6 for every size not given

	Conns        int           // connections (durable: senders)
	Rooms        int           // rooms (chat: derived from RoomSize)
	RoomSize     int           // chat: connections per room
	Duration     time.Duration // hold (idle), send phase (chat, durable), each step (fanout)
	Rate         float64       // total sends/s (fanout: of the first step)
	RateFactor   float64       // fanout: rate multiplier per step
	Rates        []float64     // fanout: the total sends/s of each step (instead of Rate, RateFactor, Steps)
	Steps        int           // fanout: most steps
	Refine       int           // fanout: after the first step that breaks, up to this many more bisecting between it and the last good rate
	MaxP99       time.Duration // fanout: a step with a larger delivery p99 breaks the bound
	MaxLoss      float64       // fanout: a step losing more than this fraction breaks the bound
	BodySize     int           // bytes per message body
	ConnsPerUser int           // sessions are shared by this many connections (server: gateway.max_conns_per_user)
	Concurrency  int           // connections opened at once (per worker)
	MaxErrors    int           // connect: stop past this many failed connections
	Drain        time.Duration // how long to wait for outstanding deliveries after sending
	Settle       time.Duration // idle: wait before reading memory after connecting
	LagWait      time.Duration // persist: most to wait after sending for the consumer lag to reach 0
	Sample       time.Duration // persist: /metrics lag sampling interval
	CPUProfile   string        // write CPU profiles: this file (coordinator) and FILE.wN (worker N)
	BatchWait    time.Duration // receive: pause between small epoll batches under load (default 500µs; < 0: never)

	PID       int  // server pid for VmRSS; 0: /metrics
	Workers   int  // worker processes (0: one, in this process)
	InProcess bool // run the workers as goroutines (tests)

	Progress io.Writer // once-a-second progress; nil: none
}

// MaxWorkers bounds --workers: each is a process of its own.
const MaxWorkers = 64

// MaxRate bounds --rate and --rates, in sends/s.
const MaxRate = 1e6

// Bar2Deliveries is bar 2's floor in deliveries/s, which the load tool's
// receive capacity and the machine's write ceiling are measured against.
const Bar2Deliveries = 150000

// checkNumber refuses a flag value no run means: not a number, infinite,
// or negative. (For most flags 0 takes the default.)
func checkNumber(flag string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return fmt.Errorf("%s: want a number, 0 or more", flag)
	}
	return nil
}

// numFlag is one flag's value, for checkNumber.
type numFlag struct {
	flag string
	v    float64
}

func checkNumbers(fs ...numFlag) error {
	for _, f := range fs {
		if err := checkNumber(f.flag, f.v); err != nil {
			return err
		}
	}
	return nil
}

// validate refuses what no run means, before the defaults fill in the
// zeros: a negative or non-numeric count, time or rate, a rate past
// MaxRate, a loss bound that is not a fraction, a rate factor that does
// not climb, more worker processes than MaxWorkers.
func (o *Options) validate() error {
	err := checkNumbers(
		numFlag{"--conns", float64(o.Conns)}, numFlag{"--rooms", float64(o.Rooms)}, numFlag{"--room-size", float64(o.RoomSize)},
		numFlag{"--steps", float64(o.Steps)}, numFlag{"--refine", float64(o.Refine)}, numFlag{"--body-size", float64(o.BodySize)},
		numFlag{"--conns-per-user", float64(o.ConnsPerUser)}, numFlag{"--concurrency", float64(o.Concurrency)},
		numFlag{"--max-errors", float64(o.MaxErrors)}, numFlag{"--pid", float64(o.PID)}, numFlag{"--workers", float64(o.Workers)},
		numFlag{"--duration", float64(o.Duration)}, numFlag{"--max-p99", float64(o.MaxP99)}, numFlag{"--drain", float64(o.Drain)},
		numFlag{"--settle", float64(o.Settle)}, numFlag{"--lag-wait", float64(o.LagWait)}, numFlag{"--sample", float64(o.Sample)},
		numFlag{"--rate", o.Rate}, numFlag{"--rate-factor", o.RateFactor}, numFlag{"--max-loss", o.MaxLoss},
	)
	if err != nil {
		return err
	}
	for _, r := range o.Rates {
		if checkNumber("--rates", r) != nil || r > MaxRate {
			return fmt.Errorf("--rates: %v is not a rate up to 1,000,000 sends/s", r)
		}
	}
	switch {
	case o.Rate > MaxRate:
		return errors.New("--rate: at most 1,000,000 sends/s")
	case o.RateFactor != 0 && o.RateFactor <= 1:
		return errors.New("--rate-factor: must be more than 1, so each step sends faster")
	case o.MaxLoss > 1:
		return errors.New("--max-loss: a fraction of the deliveries, 0 to 1")
	case o.Workers > MaxWorkers:
		return fmt.Errorf("--workers: at most %d processes", MaxWorkers)
	case o.Drain > 2*time.Minute:
		return errors.New("--drain: at most 2m")
	}
	return nil
}

func (o *Options) defaults() error {
	if err := o.validate(); err != nil {
		return err
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	defF := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	if o.URL == "" {
		o.URL = "http://127.0.0.1:8080"
	}
	if o.Bar {
		if err := o.barShape(); err != nil {
			return err
		}
	}
	def(&o.BodySize, 100)
	def(&o.ConnsPerUser, 32)
	def(&o.Concurrency, 64)
	if o.BatchWait == 0 {
		o.BatchWait = DefaultBatchWait
	}
	if o.BatchWait > 5*time.Millisecond {
		return errors.New("--batch-wait: at most 5ms")
	}
	defD(&o.Drain, 5*time.Second)
	switch o.Scenario {
	case "idle":
		def(&o.Conns, 1000)
		def(&o.Rooms, 10)
		defD(&o.Duration, 5*time.Second)
		defD(&o.Settle, 2*time.Second)
	case "fanout":
		def(&o.Conns, 1000)
		def(&o.Rooms, 10)
		defD(&o.Duration, 3*time.Second)
		defF(&o.Rate, 100)
		defF(&o.RateFactor, 2)
		def(&o.Steps, 4)
		defD(&o.MaxP99, 50*time.Millisecond)
		if len(o.Rates) > 0 {
			o.Steps = len(o.Rates)
			for i, r := range o.Rates {
				if r <= 0 || (i > 0 && r <= o.Rates[i-1]) {
					return errors.New("--rates: positive and increasing")
				}
			}
		}
	case "chat":
		def(&o.Conns, 500)
		def(&o.RoomSize, 5)
		o.Rooms = (o.Conns + o.RoomSize - 1) / o.RoomSize
		defD(&o.Duration, 5*time.Second)
		defF(&o.Rate, float64(o.Conns)) // one message a second per person
	case "connect":
		def(&o.Conns, 1000)
		def(&o.Rooms, 10)
	case "durable":
		def(&o.Conns, 20)
		def(&o.Rooms, o.Conns) // each sender in its own room: the ack path, not fanout
		defD(&o.Duration, 5*time.Second)
		defF(&o.Rate, 500)
	case "persist":
		// Bar 4 as it stands: 10,000 durable sends/s for 60 s, over many
		// rooms (one sender per room: the store and index path, not fanout).
		def(&o.Conns, 100)
		def(&o.Rooms, o.Conns)
		defD(&o.Duration, 60*time.Second)
		defF(&o.Rate, 10000)
		defD(&o.LagWait, 60*time.Second)
		defD(&o.Sample, time.Second)
	default:
		return fmt.Errorf("unknown scenario %q (want one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}
	if o.Rooms > o.Conns {
		o.Rooms = o.Conns
	}
	if o.Conns > 200_000 || o.Duration > time.Hour || o.Steps > 50 || o.Refine > 10 {
		return errors.New("refusing an unbounded run: at most 200000 connections, 1h, 50 steps, 10 refinement steps")
	}
	if o.LagWait > 10*time.Minute || (o.Sample > 0 && o.Sample < 50*time.Millisecond) {
		return errors.New("refusing an unbounded run: --lag-wait at most 10m, --sample at least 50ms")
	}
	if o.BodySize > 4000 {
		return errors.New("--body-size: at most 4000")
	}
	return nil
}

// BarRates are bar 2's fanout steps in sends/s (x100 members: deliveries/s);
// 1,600 is the first over 150,000 deliveries/s.
var BarRates = []float64{250, 500, 1000, 1600, 2400, 3200}

// barShape fills in the sizes of the scenario's bar (issue 6).
func (o *Options) barShape() error {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	switch o.Scenario {
	case "idle": // bar 1: RSS per connection at 10,000, after settling
		def(&o.Conns, 10000)
		def(&o.Rooms, 100)
		defD(&o.Settle, 5*time.Second)
		defD(&o.Duration, 8*time.Second)
		def(&o.Workers, 2)
	case "fanout": // bar 2: 10,000 connections in 100 rooms of 100, 100-byte bodies
		def(&o.Conns, 10000)
		def(&o.Rooms, 100)
		def(&o.BodySize, 100)
		defD(&o.Duration, 5*time.Second)
		defD(&o.MaxP99, 50*time.Millisecond)
		if len(o.Rates) == 0 && o.Rate <= 0 {
			o.Rates = BarRates
		}
		def(&o.Refine, 3)
		def(&o.Workers, 2)
	case "durable": // bar 3: acks at 2,000 sends/s
		if o.Rate <= 0 {
			o.Rate = 2000
		}
		defD(&o.Duration, 10*time.Second)
		def(&o.Workers, 1)
	case "persist": // bar 4: its defaults
		def(&o.Workers, 1)
	default:
		return fmt.Errorf("--bar: %s has no bar", o.Scenario)
	}
	return nil
}

// Step is one fanout rate step (the other scenarios have one).
type Step struct {
	Rate             float64 `json:"rate"`    // offered sends/s, total
	Seconds          float64 `json:"seconds"` // send phase, or until the last delivery if later
	SendSeconds      float64 `json:"send_seconds"`
	ToolCPU          float64 `json:"tool_cpu,omitempty"` // CPUs the worker processes used over the step (1: one whole CPU)
	FramesPerRead    float64 `json:"frames_per_read,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"` // the server's (--pid) CPU time from the first send to the end of the drain
	Sent             int64   `json:"sent"`
	Acked            int64   `json:"acked"`
	SendErrors       int64   `json:"send_errors"`
	Tally            Tally   `json:"tally"`
	Lost             int64   `json:"lost"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Latency          Latency `json:"latency"`
	AckLatency       Latency `json:"ack_latency"`
	OK               bool    `json:"ok"`
	Broke            string  `json:"broke,omitempty"`
}

// Result is one run.
type Result struct {
	Scenario       string           `json:"scenario"`
	URL            string           `json:"url"`
	Conns          int              `json:"conns"`
	Rooms          int              `json:"rooms"`
	Workers        int              `json:"workers"`
	BodySize       int              `json:"body_size"`
	Connected      int              `json:"connected"`
	ConnectErrors  int              `json:"connect_errors"`
	FirstConnError string           `json:"first_connect_error,omitempty"`
	ConnectSeconds float64          `json:"connect_seconds"`
	ConnectPerSec  float64          `json:"connects_per_sec"`
	ConnectLatency Latency          `json:"connect_latency"`
	Dropped        int64            `json:"dropped"`
	RSSBefore      int64            `json:"rss_before_bytes,omitempty"`
	RSSAfter       int64            `json:"rss_after_bytes,omitempty"`
	RSSPerConn     float64          `json:"rss_per_conn_bytes,omitempty"`
	Steps          []Step           `json:"steps,omitempty"`
	LastGood       int              `json:"last_good_step"` // index into Steps, -1: none
	ErrCodes       map[string]int64 `json:"error_codes,omitempty"`
	Store          *StoreCheck      `json:"store,omitempty"`
	Persist        *Persist         `json:"persist,omitempty"`
	WorkerCPU      float64          `json:"worker_cpu_seconds,omitempty"` // CPU the workers used in the run (child processes only)
	Started        time.Time        `json:"started"`
	Seconds        float64          `json:"seconds"`
	Notes          []string         `json:"notes,omitempty"`
}

// Main returns the step that stands for the run: fanout's last good one,
// or the only one.
func (r *Result) Main() *Step {
	if len(r.Steps) == 0 {
		return nil
	}
	if r.LastGood >= 0 && r.LastGood < len(r.Steps) {
		return &r.Steps[r.LastGood]
	}
	return &r.Steps[len(r.Steps)-1]
}

// bisect narrows the gap between a good rate and a broken one with up to
// n calls of try, each at the midpoint (rounded to a whole send/s), until
// the gap is within 5% of the good rate. good or bad 0 (nothing kept within
// the bounds, or nothing broke them) means there is no gap to narrow.
func bisect(good, bad float64, n int, try func(rate float64) (ok bool, err error)) error {
	for range n {
		if good <= 0 || bad <= good || bad-good <= 0.05*good {
			return nil
		}
		mid := math.Round((good + bad) / 2)
		ok, err := try(mid)
		if err != nil {
			return err
		}
		if ok {
			good = mid
		} else {
			bad = mid
		}
	}
	return nil
}

// ErrRateLimited is returned when the server refused sends as rate_limited.
var ErrRateLimited = errors.New("the server answered rate_limited" + rateLimitHint)

// Run runs one scenario against a running server.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	u, err := checkTarget(o.URL, o.AllowRemote)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(u.String(), "/")
	a := newAPI(base)
	if o.MetricsURL != "" {
		mu, err := checkTarget(o.MetricsURL, o.AllowRemote)
		if err != nil {
			return nil, fmt.Errorf("--metrics-url: %w", err)
		}
		a.metricsURL = mu.String()
	}
	res := &Result{Scenario: o.Scenario, URL: base, Conns: o.Conns, Rooms: o.Rooms, BodySize: o.BodySize, LastGood: -1, Started: time.Now().UTC()}
	t0 := time.Now()
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "[%s %5.1fs] %s\n", o.Scenario, time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
		}
	}

	specs, err := setup(ctx, a, o, say)
	if err != nil {
		return nil, err
	}

	// Workers.
	nw := max(o.Workers, 1)
	res.Workers = nw
	p, err := startPool(ctx, nw, o.Workers == 0 || o.InProcess, base, specs, o)
	if err != nil {
		return nil, err
	}
	defer p.close()

	rssBefore, haveRSS := a.rss(ctx, o.PID)
	if !haveRSS {
		res.Notes = append(res.Notes, "server memory unknown: pass --pid or serve /metrics")
	}

	// Connect.
	maxErr := -1
	if o.Scenario == "connect" {
		maxErr = o.MaxErrors
	}
	say("opening %d connections (%d at once per worker, %d workers)", len(specs), o.Concurrency, nw)
	cStart := time.Now()
	stop := ticker(ctx, p, false, func(t totals) {
		el := time.Since(cStart).Seconds()
		say("connected %d/%d  %.0f/s  errors %d", t.Connected, len(specs), float64(t.Connected)/el, t.ConnErrors)
	})
	rs, err := p.all(ctx, func(int) command {
		c := command{Op: "connect"}
		c.Arg.Concurrency, c.Arg.MaxErrors = o.Concurrency, maxErr
		return c
	})
	stop()
	if err != nil {
		return nil, err
	}
	ct := merge(rs)
	res.ConnectSeconds = time.Since(cStart).Seconds()
	res.Connected, res.ConnectErrors, res.FirstConnError = ct.Connected, ct.ConnErrors, ct.FirstConnErr
	res.ConnectPerSec = float64(ct.Connected) / res.ConnectSeconds
	res.ConnectLatency = summarize(ct.Connect)
	say("connected %d in %.2fs (%.0f/s), %d errors%s", ct.Connected, res.ConnectSeconds, res.ConnectPerSec, ct.ConnErrors, firstErr(ct.FirstConnErr))
	if ct.Connected == 0 {
		return nil, fmt.Errorf("no connection could be opened%s", firstErr(ct.FirstConnErr))
	}
	if ct.ConnErrors > 0 && o.Scenario != "connect" {
		res.Notes = append(res.Notes, fmt.Sprintf("%d connections failed%s", ct.ConnErrors, firstErr(ct.FirstConnErr)))
	}

	pubs := 0
	for _, s := range specs {
		if s.Pub > 0 {
			pubs++
		}
	}
	switch o.Scenario {
	case "idle":
		if o.Settle > 0 {
			time.Sleep(o.Settle)
		}
		after, _ := a.rss(ctx, o.PID)
		hold := o.Duration - o.Settle
		if hold > 0 {
			say("holding %d idle connections for %s", ct.Connected, hold)
			select {
			case <-time.After(hold):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if haveRSS {
			res.RSSBefore, res.RSSAfter = rssBefore, after
			res.RSSPerConn = float64(after-rssBefore) / float64(ct.Connected)
		}
	case "connect":
		if haveRSS {
			res.RSSBefore = rssBefore
			res.RSSAfter, _ = a.rss(ctx, o.PID)
		}
	case "fanout":
		// step runs one step at rate and records it; ok says whether it
		// kept within the bounds.
		step := func(rate float64) (ok bool, err error) {
			n := len(res.Steps) + 1
			if n > 1 {
				// A step that overloaded the server leaves the store and
				// index consumers behind (ingest then pauses for them): the
				// next step starts once they have caught up, or after a
				// minute.
				settle(ctx, a, time.Minute, say)
			}
			st, err := runStep(ctx, p, n, rate, pubs, o, say)
			res.mergeCodes(st.codes)
			if err != nil {
				return false, err
			}
			s := st.Step
			var why []string
			if s.Latency.P99 >= float64(o.MaxP99)/float64(time.Millisecond) {
				why = append(why, fmt.Sprintf("p99 %.1fms >= %s", s.Latency.P99, o.MaxP99))
			}
			if s.Tally.Expected > 0 && float64(s.Lost) > o.MaxLoss*float64(s.Tally.Expected) {
				why = append(why, fmt.Sprintf("lost %d of %d", s.Lost, s.Tally.Expected))
			}
			if s.Tally.Dups > 0 {
				why = append(why, fmt.Sprintf("%d duplicates", s.Tally.Dups))
			}
			if s.SendErrors > 0 {
				why = append(why, fmt.Sprintf("%d send errors", s.SendErrors))
			}
			if ct.Connected > 0 && st.dropped > 0 {
				why = append(why, fmt.Sprintf("%d connections dropped", st.dropped))
			}
			s.OK = len(why) == 0
			s.Broke = strings.Join(why, ", ")
			res.Steps = append(res.Steps, s)
			if !s.OK {
				say("step %d broke the bound: %s", n, s.Broke)
				return false, nil
			}
			// Steps only climb past the last good rate, so the newest
			// good step is the best.
			res.LastGood = n - 1
			return true, nil
		}
		rate, good, bad := o.Rate, 0.0, 0.0
		for i := range o.Steps {
			if len(o.Rates) > 0 {
				rate = o.Rates[i]
			}
			ok, err := step(rate)
			if err != nil {
				return nil, err
			}
			if !ok {
				bad = rate
				break
			}
			good = rate
			rate *= o.RateFactor
		}
		if err := bisect(good, bad, o.Refine, func(rate float64) (bool, error) {
			say("refining: %.0f sends/s", rate)
			return step(rate)
		}); err != nil {
			return nil, err
		}
		if haveRSS {
			res.RSSBefore = rssBefore
			res.RSSAfter, _ = a.rss(ctx, o.PID)
		}
	case "chat", "durable":
		st, err := runStep(ctx, p, 1, o.Rate, pubs, o, say)
		res.mergeCodes(st.codes)
		if err != nil {
			return nil, err
		}
		st.Step.OK = st.Step.Lost == 0 && st.Step.Tally.Dups == 0 && st.Step.SendErrors == 0
		res.Steps = append(res.Steps, st.Step)
		res.LastGood = 0
		if haveRSS {
			res.RSSBefore = rssBefore
			res.RSSAfter, _ = a.rss(ctx, o.PID)
		}
		if o.Scenario == "durable" {
			acks, err := fetchAcks(ctx, p)
			if err != nil {
				return nil, err
			}
			say("reading back every acked message")
			sc, err := verifyStored(ctx, a, roomTokens(specs), acks, time.Now().Add(30*time.Second), say)
			if err != nil {
				return nil, err
			}
			res.Store = sc
			if !sc.OK() {
				res.Steps[0].OK = false
			}
		}
	case "persist":
		if err := runPersist(ctx, a, p, pubs, specs, o, res, say); err != nil {
			return nil, err
		}
		if haveRSS {
			res.RSSBefore = rssBefore
			res.RSSAfter, _ = a.rss(ctx, o.PID)
		}
	}
	dropped := merge(mustStats(ctx, p)).Dropped
	res.Dropped = dropped
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

func firstErr(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

func (r *Result) mergeCodes(m map[string]int64) {
	for k, v := range m {
		if r.ErrCodes == nil {
			r.ErrCodes = map[string]int64{}
		}
		r.ErrCodes[k] += v
	}
}

func mustStats(ctx context.Context, p pool) []reply {
	rs, _ := p.op(ctx, "stats")
	return rs
}

// mustCounts is mustStats without the histograms, for polling.
func mustCounts(ctx context.Context, p pool) []reply {
	rs, _ := p.all(ctx, func(int) command { c := command{Op: "stats"}; c.Arg.Counts = true; return c })
	return rs
}

// ticker calls f with fresh totals once a second until the returned stop;
// with hists false they are counts only (see mustCounts).
func ticker(ctx context.Context, p pool, hists bool, f func(totals)) (stop func()) {
	return every(ctx, time.Second, false, func() {
		rs, err := p.all(ctx, func(int) command { c := command{Op: "stats"}; c.Arg.Counts = !hists; return c })
		if err == nil {
			f(merge(rs))
		}
	})
}

// every calls f on its own goroutine each d (and at once if now) until ctx
// ends or the returned stop, which waits for a call under way.
func every(ctx context.Context, d time.Duration, now bool, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		if now {
			f()
		}
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				f()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

type stepOut struct {
	Step
	codes   map[string]int64
	dropped int64
}

// runStep sends at rate (total) from every publisher for o.Duration, waits
// for outstanding acks and deliveries, and accounts the step.
func runStep(ctx context.Context, p pool, step int, rate float64, pubs int, o Options, say func(string, ...any)) (stepOut, error) {
	var out stepOut
	if pubs == 0 {
		return out, errors.New("no publishers")
	}
	if _, err := p.all(ctx, func(int) command { c := command{Op: "reset"}; c.Arg.Step = step; return c }); err != nil {
		return out, err
	}
	before := merge(mustStats(ctx, p)).Dropped
	say("step %d: %.0f sends/s from %d publishers for %s", step, rate, pubs, o.Duration)
	cpu0, haveCPU := p.cpuSeconds()
	srv0, srvErr := serverCPU(o.PID)
	start := time.Now()
	var last int64
	lastT := start
	stop := ticker(ctx, p, true, func(t totals) {
		now := time.Now()
		dps := float64(t.Tally.Unique-last) / now.Sub(lastT).Seconds()
		last, lastT = t.Tally.Unique, now
		say("step %d  sent %d  acked %d  deliveries %d (%.0f/s)  p99 %.1fms  ack p99 %.1fms  errors %d%s",
			step, t.Sent, t.Acked, t.Tally.Unique, dps, summarize(t.Lat).P99, summarize(t.AckLat).P99, t.SendErr, codes(t.ErrCodes))
	})
	_, err := p.all(ctx, func(int) command {
		c := command{Op: "publish"}
		c.Arg.Rate, c.Arg.Duration = rate/float64(pubs), o.Duration
		return c
	})
	stop()
	if err != nil {
		return out, err
	}
	sendTime := time.Since(start)
	// Drain: wait for every ack (or error) and every owed delivery, as long
	// as they keep coming (o.Drain without progress ends it; 2 min at most).
	var t totals
	quiet, hard := time.Now().Add(o.Drain), time.Now().Add(max(2*time.Minute, o.Drain))
	var seen int64 = -1
	lastProgress := time.Now()
	for {
		t = merge(mustCounts(ctx, p))
		if t.ErrCodes["rate_limited"] > 0 {
			out.codes = t.ErrCodes
			return out, ErrRateLimited
		}
		now := time.Now()
		if t.Acked+t.SendErr >= t.Sent && t.Tally.Unique >= t.Tally.Expected {
			lastProgress = now
			break
		}
		if n := t.Acked + t.SendErr + t.Tally.Unique; n != seen {
			seen, quiet, lastProgress = n, now.Add(o.Drain), now
		}
		if now.After(quiet) || now.After(hard) {
			break
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv1, srvErr1 := serverCPU(o.PID)
	t = merge(mustStats(ctx, p))
	s := Step{Rate: rate, Seconds: sendTime.Seconds(), Sent: t.Sent, Acked: t.Acked, SendErrors: t.SendErr, Tally: t.Tally,
		Lost: t.Tally.Lost(), Latency: summarize(t.Lat), AckLatency: summarize(t.AckLat)}
	// Throughput over the time the deliveries took: the send phase, or up
	// to the last one that came while draining if the server fell behind.
	s.Seconds = max(sendTime, lastProgress.Sub(start)).Seconds()
	s.SendSeconds = sendTime.Seconds()
	if t.Reads > 0 {
		s.FramesPerRead = float64(t.Tally.Received+t.Acked) / float64(t.Reads)
	}
	if cpu1, ok := p.cpuSeconds(); ok && haveCPU {
		s.ToolCPU = (cpu1 - cpu0) / time.Since(start).Seconds()
	}
	s.DeliveriesPerSec = float64(t.Tally.Unique) / s.Seconds
	if srvErr == nil && srvErr1 == nil {
		s.ServerCPUSeconds = srv1 - srv0
	}
	if unacked := t.Sent - t.Acked - t.SendErr; unacked > 0 {
		s.SendErrors += unacked // never answered: count as failed
		t.ErrCodes["unanswered"] += unacked
	}
	say("step %d done: %.0f deliveries/s  lost %d  dup %d  reordered %d  p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms  tool CPU %.2f  frames/read %.2f%s",
		step, s.DeliveriesPerSec, s.Lost, s.Tally.Dups, s.Tally.Reorders, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.ToolCPU, s.FramesPerRead, serverCPULine(s))
	out.Step, out.codes, out.dropped = s, t.ErrCodes, t.Dropped-before
	return out, nil
}

// serverCPU is the CPU-seconds the server process has used so far, read
// from /proc (so only for a local server given with --pid).
func serverCPU(pid int) (float64, error) {
	if pid <= 0 {
		return 0, errors.New("no --pid")
	}
	return procCPU(pid)
}

// CPUPerDelivery is the server's CPU time per delivered frame in µs (every
// role's share included: ingest, log, store and index as well as the
// fanout), or 0 when it was not measured.
func (s *Step) CPUPerDelivery() float64 {
	if s.ServerCPUSeconds <= 0 || s.Tally.Unique == 0 {
		return 0
	}
	return s.ServerCPUSeconds / float64(s.Tally.Unique) * 1e6
}

func serverCPULine(s Step) string {
	if us := s.CPUPerDelivery(); us > 0 {
		return fmt.Sprintf("  server %.2f CPU-s (%.2f µs/delivery)", s.ServerCPUSeconds, us)
	}
	return ""
}

func codes(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, " %s=%d", k, v)
	}
	return " (" + strings.TrimSpace(b.String()) + ")"
}

// setup creates the run's users and rooms and lays out its connections.
func setup(ctx context.Context, a *api, o Options, say func(string, ...any)) ([]connSpec, error) {
	run := strconv.FormatInt(time.Now().UnixNano()%int64(math.Pow(36, 6)), 36)
	users := (o.Conns + o.ConnsPerUser - 1) / o.ConnsPerUser
	say("creating %d users and %d rooms (run %s)", users, o.Rooms, run)
	tokens := make([]string, users)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok, err := a.account(ctx, fmt.Sprintf("bench%s_%d", run, i), "bench-password-"+run)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			tokens[i] = tok
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	rooms := make([]string, o.Rooms)
	for i := range rooms {
		id, err := a.createRoom(ctx, tokens[i%users], fmt.Sprintf("bench %s %d", run, i))
		if err != nil {
			return nil, err
		}
		rooms[i] = id
	}
	specs := make([]connSpec, o.Conns)
	pub := 0
	perUser := (o.Conns + users - 1) / users
	for i := range specs {
		specs[i] = connSpec{Token: tokens[i/perUser], Room: rooms[i%o.Rooms]}
		switch o.Scenario {
		case "fanout":
			if i < o.Rooms { // one publisher per room
				pub++
				specs[i].Pub = pub
			}
		case "chat", "durable", "persist":
			pub++
			specs[i].Pub = pub
		}
	}
	return specs, nil
}
