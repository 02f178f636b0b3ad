package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// persist: durable sends at a fixed total rate while the server's store and
// index consumers are watched through /metrics (chatd_log_lag{group}), then
// a bounded wait for both to catch up and a read-back of every acked message
// through the public history API.

// Persist is what the persist scenario measured besides its step.
type Persist struct {
	OfferedRate float64             `json:"offered_rate"`
	SentRate    float64             `json:"sent_rate"`  // sends written per second of the send phase
	AckedRate   float64             `json:"acked_rate"` // acks per second, until the last ack
	Lag         map[string]*LagStat `json:"lag"`        // by consumer group (store, index)
	Samples     int                 `json:"samples"`
	ScrapeErrs  int                 `json:"scrape_errors"`
	CaughtUp    bool                `json:"caught_up"`          // every group reached lag 0 within --lag-wait
	CatchUpSecs float64             `json:"catch_up_seconds"`   // after the send phase ended
	NoLagMetric bool                `json:"no_lag_metric"`      // /metrics had no chatd_log_lag
	AppendedBy  string              `json:"appended_by_metric"` // the counter the lag in seconds was derived from
	// SinkWritten is what each log consumer (store, index) wrote during the
	// run, from chatd_sink_messages_total: history pages serve the newest
	// messages of a room from the recent window (redis.recent_per_room),
	// so the read-back alone cannot prove a small run reached the store.
	SinkWritten map[string]int64 `json:"sink_written"`
}

// OK is bar 4's verdict on the run apart from the 2 s bound: the offered
// rate was sent and acked, both consumers caught up, the store consumer
// wrote at least every acked message and each is stored exactly once.
func (p *Persist) OK(sc *StoreCheck) bool {
	if p == nil || !sc.OK() || !p.CaughtUp || p.NoLagMetric {
		return false
	}
	if p.AckedRate < 0.99*p.OfferedRate {
		return false
	}
	if n, ok := p.SinkWritten["store"]; ok && n < sc.Acked {
		return false
	}
	return true
}

// LagStat is one consumer group's lag over the run.
// Lag is in log entries (chatd_log_lag): one message each on Kafka, one
// or more on JetStream.
type LagStat struct {
	MaxEntries int64   `json:"max_entries"`
	MaxSeconds float64 `json:"max_seconds"`
	Last       int64   `json:"last_entries"`
}

// StoreCheck is the read-back of every acked message.
type StoreCheck struct {
	Acked      int64   `json:"acked"`
	Found      int64   `json:"found_once"`
	Missing    int64   `json:"missing"`
	Doubled    int64   `json:"doubled"`   // acked IDs stored more than once
	DupSends   int64   `json:"dup_sends"` // acked sends stored under more than one ID
	Unacked    int64   `json:"unacked"`   // stored bench messages whose ack never came (informational)
	Pages      int64   `json:"pages"`     // history pages read
	Seconds    float64 `json:"seconds_to_converge"`
	ReadSecond float64 `json:"read_seconds"` // the last full read-back
}

// OK is true when every acked message is stored exactly once.
func (s *StoreCheck) OK() bool {
	return s != nil && s.Missing == 0 && s.Doubled == 0 && s.DupSends == 0 && s.Found == s.Acked
}

func runPersist(ctx context.Context, a *api, p pool, pubs int, specs []connSpec, o Options, res *Result, say func(string, ...any)) error {
	ls := &lagSampler{a: a, every: o.Sample, say: say, lag: map[string]*LagStat{}}
	stopSampler := ls.run(ctx)
	st, err := runStep(ctx, p, 1, o.Rate, pubs, o, say)
	res.mergeCodes(st.codes)
	if err != nil {
		stopSampler()
		return err
	}
	sendEnd := time.Now()
	s := st.Step
	s.OK = s.Lost == 0 && s.Tally.Dups == 0 && s.SendErrors == 0
	res.Steps, res.LastGood = append(res.Steps, s), 0
	pr := &Persist{OfferedRate: o.Rate}
	// Sent over the send phase; acked over the time the acks took (the
	// send phase, or until the last ack if the server fell behind).
	if s.SendSeconds > 0 {
		pr.SentRate = float64(s.Sent) / s.SendSeconds
	}
	if d := max(s.Seconds, s.SendSeconds); d > 0 {
		pr.AckedRate = float64(s.Acked) / d
	}
	stopSampler() // the wait below samples by itself, more often
	say("waiting up to %s for the store and index to catch up", o.LagWait)
	pr.CaughtUp = ls.waitZero(ctx, time.Now().Add(o.LagWait), min(o.Sample, 250*time.Millisecond))
	pr.CatchUpSecs = time.Since(sendEnd).Seconds()
	ls.mu.Lock()
	pr.Lag, pr.Samples, pr.ScrapeErrs, pr.AppendedBy = ls.lag, ls.samples, ls.errors, ls.appendedBy
	pr.NoLagMetric = len(ls.lag) == 0
	pr.SinkWritten = map[string]int64{}
	for g, v := range ls.sinkLast {
		pr.SinkWritten[g] = int64(v - ls.sinkFirst[g])
	}
	ls.mu.Unlock()
	res.Persist = pr
	for _, g := range sortedKeys(pr.Lag) {
		l := pr.Lag[g]
		say("%s lag: max %d log entries, %.2fs", g, l.MaxEntries, l.MaxSeconds)
	}
	acks, err := fetchAcks(ctx, p)
	if err != nil {
		return err
	}
	say("reading back %d acked messages", len(acks))
	sc, err := verifyStored(ctx, a, roomTokens(specs), acks, time.Now().Add(max(30*time.Second, o.LagWait/2)), say)
	if err != nil {
		return err
	}
	res.Store = sc
	if !pr.OK(sc) {
		res.Steps[0].OK = false
	}
	return nil
}

// roomTokens is, for each room, the session of a connection in it (a member).
func roomTokens(specs []connSpec) map[string]string {
	out := map[string]string{}
	for _, s := range specs {
		if _, ok := out[s.Room]; !ok {
			out[s.Room] = s.Token
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fetchAcks collects every worker's acked sends.
func fetchAcks(ctx context.Context, p pool) ([]ackRec, error) {
	rs, err := p.op(ctx, "acks")
	if err != nil {
		return nil, err
	}
	var out []ackRec
	for _, r := range rs {
		out = append(out, r.Acks...)
	}
	return out, nil
}

// lagSampler scrapes /metrics every interval and keeps each consumer
// group's largest lag, in log entries (chatd_log_lag) and in seconds: how
// long ago the log held as many entries as the group has committed now,
// from the series of the log's appended counter, interpolated between
// scrapes.
type lagSampler struct {
	a     *api
	every time.Duration
	say   func(string, ...any)

	mu         sync.Mutex
	series     []appendedAt
	sinkFirst  map[string]float64
	sinkLast   map[string]float64
	lag        map[string]*LagStat
	current    map[string]int64
	samples    int
	errors     int
	appendedBy string
}

type appendedAt struct {
	t time.Time
	n float64
}

func (l *lagSampler) run(ctx context.Context) (stop func()) {
	return every(ctx, l.every, true, func() { l.sample(ctx) })
}

func (l *lagSampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := l.a.metrics(ctx)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errors++
		return
	}
	l.samples++
	var appended float64
	var have bool
	// The lag is in log entries, so the series must be too: chatd counts
	// the entries it appends; a chatd from before entries held several
	// messages counted messages, one per entry.
	for _, name := range []string{"chatd_log_entries_appended_total", "chatd_log_appended_total", "chatd_ingest_appended_total"} {
		for _, m := range ms {
			if m.name == name {
				appended += m.value
				have = true
			}
		}
		if have {
			l.appendedBy = name
			break
		}
	}
	if have {
		l.series = append(l.series, appendedAt{now, appended})
	}
	for _, m := range ms {
		if m.name == "chatd_sink_messages_total" {
			g := m.labels["sink"]
			if l.sinkFirst == nil {
				l.sinkFirst, l.sinkLast = map[string]float64{}, map[string]float64{}
			}
			if _, ok := l.sinkFirst[g]; !ok {
				l.sinkFirst[g] = m.value
			}
			l.sinkLast[g] = m.value
		}
	}
	cur := map[string]int64{}
	var line []string
	for _, m := range ms {
		if m.name != "chatd_log_lag" {
			continue
		}
		g := m.labels["group"]
		n := int64(m.value)
		cur[g] = n
		st := l.lag[g]
		if st == nil {
			st = &LagStat{}
			l.lag[g] = st
		}
		st.Last = n
		st.MaxEntries = max(st.MaxEntries, n)
		secs := 0.0
		if n > 0 && have {
			secs = l.behind(now, appended-float64(n))
		}
		st.MaxSeconds = max(st.MaxSeconds, secs)
		line = append(line, fmt.Sprintf("%s %d (%.2fs)", g, n, secs))
	}
	l.current = cur
	sort.Strings(line)
	if len(line) > 0 {
		l.say("consumer lag: %s", strings.Join(line, ", "))
	}
}

// behind is how long before now the log's appended count first reached
// committed (the series is in time order; called with l.mu held).
func (l *lagSampler) behind(now time.Time, committed float64) float64 {
	s := l.series
	if len(s) == 0 {
		return 0
	}
	j := sort.Search(len(s), func(i int) bool { return s[i].n >= committed })
	var at time.Time
	switch {
	case j == 0:
		at = s[0].t // older than the first scrape: a lower bound
	case j == len(s):
		return 0 // committed more than appended: a race between the two reads
	default:
		a, b := s[j-1], s[j]
		f := (committed - a.n) / (b.n - a.n)
		at = a.t.Add(time.Duration(f * float64(b.t.Sub(a.t))))
	}
	return max(0, now.Sub(at).Seconds())
}

// waitZero scrapes every interval until a scrape shows every group at lag
// 0, or deadline. The sampler's own loop must be stopped: scrapes go into
// the series in time order.
func (l *lagSampler) waitZero(ctx context.Context, deadline time.Time, every time.Duration) bool {
	for {
		l.mu.Lock()
		zero := len(l.current) > 0
		for _, n := range l.current {
			if n != 0 {
				zero = false
			}
		}
		l.mu.Unlock()
		if zero {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(every)
		l.sample(ctx)
	}
}

// settle waits, up to limit, until the server's consumer groups have
// committed everything in the log (chatd_log_lag 0 for every group; a
// server that exports none counts as settled).
func settle(ctx context.Context, a *api, limit time.Duration, say func(string, ...any)) {
	l := &lagSampler{a: a, say: func(string, ...any) {}, lag: map[string]*LagStat{}}
	l.sample(ctx)
	l.mu.Lock()
	none := len(l.current) == 0
	l.mu.Unlock()
	if none {
		return
	}
	start := time.Now()
	if !l.waitZero(ctx, start.Add(limit), 250*time.Millisecond) {
		say("consumers still behind after %s; starting the step anyway", limit)
	} else if d := time.Since(start); d > time.Second {
		say("waited %.1fs for the consumers to catch up", d.Seconds())
	}
}

// promSample is one line of the Prometheus text format.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseProm reads the Prometheus text exposition format (comments skipped;
// label values without escaped quotes, which is all chatd exports).
func parseProm(r io.Reader) ([]promSample, error) {
	var out []promSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var m promSample
		rest := line
		if i := strings.IndexAny(line, "{ "); i < 0 {
			continue
		} else if line[i] == '{' {
			j := strings.IndexByte(line, '}')
			if j < i {
				continue
			}
			m.name, rest = line[:i], line[j+1:]
			m.labels = map[string]string{}
			for _, kv := range strings.Split(line[i+1:j], ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if ok {
					m.labels[k] = strings.Trim(v, `"`)
				}
			}
		} else {
			m.name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m.value = v
		out = append(out, m)
	}
	return out, sc.Err()
}

// metrics scrapes /metrics.
func (a *api) metrics(ctx context.Context) ([]promSample, error) {
	u := a.metricsURL
	if u == "" {
		u = a.base + "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", res.Status)
	}
	return parseProm(res.Body)
}

// verifyStored reads back the history of every room with an acked message
// until each acked message ID is stored exactly once, or deadline. Rooms
// that were complete are not read again.
func verifyStored(ctx context.Context, a *api, tokens map[string]string, acks []ackRec, deadline time.Time, say func(string, ...any)) (*StoreCheck, error) {
	byRoom := map[string][]ackRec{}
	for _, k := range acks {
		byRoom[k.Room] = append(byRoom[k.Room], k)
	}
	type roomCheck struct {
		found, missing, doubled, dupSends, unacked, pages int64
	}
	done := map[string]roomCheck{}
	start := time.Now()
	var lastRead float64
	for {
		var todo []string
		for room := range byRoom {
			if _, ok := done[room]; !ok {
				todo = append(todo, room)
			}
		}
		t0 := time.Now()
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		results := map[string]roomCheck{}
		for _, room := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				msgs, pages, err := a.roomHistory(ctx, tokens[room], room)
				var rc roomCheck
				rc.pages = int64(pages)
				if err == nil {
					ids := make(map[string]int, len(msgs))
					sends := map[[2]int64]map[string]bool{}
					for _, m := range msgs {
						ids[m.ID]++
						if s, ok := decodeBody([]byte(m.Body)); ok {
							k := [2]int64{int64(s.Pub), s.Seq}
							if sends[k] == nil {
								sends[k] = map[string]bool{}
							}
							sends[k][m.ID] = true
						}
					}
					ackedIDs := map[string]bool{}
					for _, k := range byRoom[room] {
						ackedIDs[k.ID] = true
						switch ids[k.ID] {
						case 0:
							rc.missing++
						case 1:
							rc.found++
						default:
							rc.doubled++
						}
						if len(sends[[2]int64{int64(k.Pub), k.Seq}]) > 1 {
							rc.dupSends++
						}
					}
					for _, set := range sends {
						for id := range set {
							if !ackedIDs[id] {
								rc.unacked++
							}
						}
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("read back room %s: %w", room, err)
				}
				results[room] = rc
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
		lastRead = time.Since(t0).Seconds()
		sc := &StoreCheck{Acked: int64(len(acks)), ReadSecond: lastRead}
		for room, rc := range results {
			if rc.missing == 0 && rc.doubled == 0 && rc.dupSends == 0 {
				done[room] = rc
			}
		}
		for room := range byRoom {
			rc, ok := done[room]
			if !ok {
				rc = results[room]
			}
			sc.Found += rc.found
			sc.Missing += rc.missing
			sc.Doubled += rc.doubled
			sc.DupSends += rc.dupSends
			sc.Unacked += rc.unacked
		}
		for _, rc := range results {
			sc.Pages += rc.pages
		}
		sc.Seconds = time.Since(start).Seconds()
		if sc.OK() || time.Now().After(deadline) || ctx.Err() != nil {
			say("stored once %d of %d acked (missing %d, doubled %d, sends stored twice %d, unacked stored %d; %d pages in %.1fs)",
				sc.Found, sc.Acked, sc.Missing, sc.Doubled, sc.DupSends, sc.Unacked, sc.Pages, lastRead)
			return sc, ctx.Err()
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type histMsg struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

// roomHistory pages a room's whole history (newest first, 200 a page, at
// most 100,000 pages).
func (a *api) roomHistory(ctx context.Context, token, room string) ([]histMsg, int, error) {
	var out []histMsg
	before := ""
	for pages := 1; pages <= 100_000; pages++ {
		path := "/api/v1/rooms/" + room + "/messages?limit=200"
		if before != "" {
			path += "&before=" + before
		}
		var page struct {
			Messages   []histMsg `json:"messages"`
			NextBefore string    `json:"next_before"`
		}
		if err := a.do(ctx, "GET", path, token, nil, &page); err != nil {
			return nil, pages, err
		}
		out = append(out, page.Messages...)
		if len(page.Messages) == 0 || page.NextBefore == "" || page.NextBefore == before {
			return out, pages, nil
		}
		before = page.NextBefore
	}
	return out, 100_000, fmt.Errorf("more than 100000 pages")
}
