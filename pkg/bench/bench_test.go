package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBodyRoundTrip(t *testing.T) {
	for _, size := range []int{0, 10, 47, 100, 4000} {
		s := stamp{Step: 3, Pub: 1234, Seq: 987654, Sent: time.Now().UnixNano()}
		b := encodeBody(nil, s, size)
		if size > len(b) || (size >= 60 && len(b) != size) {
			t.Errorf("size %d: body is %d bytes", size, len(b))
		}
		if strings.ContainsAny(string(b), "\"\\") || strings.HasSuffix(string(b), " ") {
			t.Errorf("body %q needs escaping or trimming", b)
		}
		got, ok := decodeBody(b)
		if !ok || got != s {
			t.Errorf("size %d: decode %q = %+v, %v; want %+v", size, b, got, ok, s)
		}
	}
	for _, bad := range []string{"", "hello", "cb1 1 2 3", "cb2 1 2 3 4", "cb1 1 2 x 4", "cb1 -1 2 3 4"} {
		if _, ok := decodeBody([]byte(bad)); ok {
			t.Errorf("decodeBody(%q) accepted", bad)
		}
	}
}

func TestNonceRoundTrip(t *testing.T) {
	s := stamp{Step: 1, Pub: 7, Seq: 42, Sent: 1700000000000000000}
	n := encodeNonce(nil, s)
	if got, ok := decodeNonce(n); !ok || got != s {
		t.Fatalf("decode %q = %+v %v", n, got, ok)
	}
	for _, bad := range []string{"", "1.2.3", "1.2.3.4.5", "a.2.3.4", "1..3.4"} {
		if _, ok := decodeNonce([]byte(bad)); ok {
			t.Errorf("decodeNonce(%q) accepted", bad)
		}
	}
}

func TestSendFrameAndFields(t *testing.T) {
	s := stamp{Step: 2, Pub: 5, Seq: 9, Sent: 123}
	f := sendFrame(nil, "777", s, 100)
	if ty, _ := stringField(f, "type"); string(ty) != "send" {
		t.Errorf("type %q", ty)
	}
	if r, _ := stringField(f, "room_id"); string(r) != "777" {
		t.Errorf("room %q", r)
	}
	body, _ := stringField(f, "body")
	if got, ok := decodeBody(body); !ok || got != s {
		t.Errorf("body %q", body)
	}
	// A server message frame: the first "type" is the frame's.
	msg := []byte(`{"type":"message","message":{"id":"1","room_id":"777","user_id":"2","username":"a","body":"` + string(body) + `","created_at":"x","nonce":"n"}}`)
	if ty, _ := stringField(msg, "type"); string(ty) != "message" {
		t.Errorf("message type %q", ty)
	}
	if b, ok := stringField(msg, "body"); !ok || string(b) != string(body) {
		t.Errorf("message body %q", b)
	}
	if _, ok := stringField([]byte(`{"type":"message","message":{"body":"a \"quoted\" b"}}`), "body"); ok {
		t.Error("escaped body taken by the fast path")
	}
}

func TestSeqTracker(t *testing.T) {
	var tr seqTracker
	type want struct{ dup, reord bool }
	steps := []struct {
		seq int64
		want
	}{
		{1, want{}}, {2, want{}}, {4, want{}}, {3, want{false, true}}, {4, want{true, false}},
		{1, want{true, false}}, {200, want{}}, {100, want{false, true}}, {201, want{}},
	}
	for _, s := range steps {
		dup, reord := tr.observe(s.seq)
		if dup != s.dup || reord != s.reord {
			t.Errorf("observe(%d) = %v,%v want %v,%v", s.seq, dup, reord, s.dup, s.reord)
		}
	}
}

func TestTally(t *testing.T) {
	acked := map[string]int64{"1": 10, "2": 5, "3": 0}
	members := map[string]int{"1": 100, "2": 3, "4": 7}
	if got := expectedDeliveries(acked, members); got != 1015 {
		t.Fatalf("expected = %d, want 1015", got)
	}
	tl := Tally{Expected: 1015, Unique: 1000}
	if tl.Lost() != 15 {
		t.Errorf("lost %d", tl.Lost())
	}
	tl.Unique = 1020 // deliveries of sends whose ack was lost
	if tl.Lost() != 0 {
		t.Errorf("lost %d", tl.Lost())
	}
}

func TestHistogram(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		record(h, time.Duration(i)*time.Millisecond)
	}
	record(h, -time.Second) // clamped to 1µs, not dropped
	l := summarize(h)
	if l.Count != 1001 {
		t.Fatalf("count %d", l.Count)
	}
	near := func(name string, got, want float64) {
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("%s = %.3f, want about %.3f", name, got, want)
		}
	}
	near("p50", l.P50, 500)
	near("p99", l.P99, 990)
	near("p99.9", l.P999, 999)
	near("max", l.Max, 1000)

	// Encoding between processes keeps every count; merging adds them.
	back := decodeHist(encodeHist(h))
	if back.TotalCount() != h.TotalCount() || back.ValueAtQuantile(99) != h.ValueAtQuantile(99) {
		t.Errorf("round trip: %d/%d p99 %d/%d", back.TotalCount(), h.TotalCount(), back.ValueAtQuantile(99), h.ValueAtQuantile(99))
	}
	if decodeHist("").TotalCount() != 0 || encodeHist(newHist()) != "" {
		t.Error("empty histogram round trip")
	}
	if (Latency{}) != summarize(newHist()) {
		t.Error("empty summary not zero")
	}
}

func TestMerge(t *testing.T) {
	h1, h2 := newHist(), newHist()
	record(h1, time.Millisecond)
	record(h2, 3*time.Millisecond)
	rs := []reply{
		{Stats: &wstats{Connected: 2, Members: map[string]int{"1": 2}, Sent: 4, Acked: 4, AckedByRoom: map[string]int64{"1": 4},
			Tally: Tally{Received: 9, Unique: 8, Dups: 1}, Lat: encodeHist(h1)}},
		{Stats: &wstats{Connected: 1, Members: map[string]int{"1": 1}, Sent: 0, AckedByRoom: map[string]int64{},
			Tally: Tally{Received: 4, Unique: 4}, Lat: encodeHist(h2)}},
	}
	tot := merge(rs)
	if tot.Connected != 3 || tot.Tally.Expected != 12 || tot.Tally.Unique != 12 || tot.Tally.Dups != 1 || tot.Tally.Lost() != 0 {
		t.Errorf("merge = %+v", tot.Tally)
	}
	if tot.Lat.TotalCount() != 2 {
		t.Errorf("latency count %d", tot.Lat.TotalCount())
	}
}

func TestCheckTarget(t *testing.T) {
	defer func(f func(string) ([]net.IP, error)) { lookupIP = f }(lookupIP)
	lookupIP = func(host string) ([]net.IP, error) {
		switch host {
		case "me.test":
			return []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("::1")}, nil
		case "mixed.test":
			return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "https://me.test", "http://127.9.9.9"} {
		if _, err := checkTarget(u, false); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:8080", "http://mixed.test", "http://nowhere.test", "http://0.0.0.0:8080", "ftp://127.0.0.1", "127.0.0.1:8080"} {
		if _, err := checkTarget(u, false); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if _, err := checkTarget("http://10.0.0.1:8080", true); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

// metricsRSS is rss's reading of a /metrics body.
func metricsRSS(r io.Reader) (int64, bool) {
	ms, _ := parseProm(r)
	return rssOf(ms)
}

func TestRSSParsing(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\tchatd\nVmPeak:\t 999 kB\nVmRSS:\t   2048 kB\nThreads: 9\n"))
	if err != nil || n != 2048*1024 {
		t.Errorf("VmRSS = %d, %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Error("no VmRSS accepted")
	}
	text := "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.2345678e+07\nprocess_resident_memory_bytes_other 1\n"
	if n, ok := metricsRSS(strings.NewReader(text)); !ok || n != 12345678 {
		t.Errorf("metrics = %d, %v", n, ok)
	}
	if n, ok := metricsRSS(strings.NewReader(`process_resident_memory_bytes{instance="a"} 4096` + "\n")); !ok || n != 4096 {
		t.Errorf("labelled metrics = %d, %v", n, ok)
	}
	if _, ok := metricsRSS(strings.NewReader("go_goroutines 5\n")); ok {
		t.Error("missing gauge found")
	}
}

func TestDefaultsBounded(t *testing.T) {
	for _, s := range Scenarios {
		o := Options{Scenario: s}
		if err := o.defaults(); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if s == "persist" {
			// Its defaults are bar 4 itself: 10,000 sends/s for 60 s.
			if o.Rate != 10000 || o.Duration != time.Minute || o.Rooms < 100 || o.LagWait == 0 || o.LagWait > 10*time.Minute {
				t.Errorf("persist defaults are not bar 4: %+v", o)
			}
			continue
		}
		if o.Conns == 0 || o.Conns > 1000 || o.Rooms == 0 || o.Duration > 10*time.Second {
			t.Errorf("%s defaults not small: %+v", s, o)
		}
	}
	// --bar gives each scenario its bar's shape.
	fo := Options{Scenario: "fanout", Bar: true}
	if err := fo.defaults(); err != nil || fo.Conns != 10000 || fo.Rooms != 100 || fo.BodySize != 100 || fo.MaxP99 != 50*time.Millisecond ||
		fo.MaxLoss != 0 || fo.Refine == 0 || len(fo.Rates) == 0 || fo.Rates[len(fo.Rates)-1]*100 < 150000 || fo.Workers < 2 {
		t.Errorf("fanout --bar: %v %+v", err, fo)
	}
	io := Options{Scenario: "idle", Bar: true}
	if err := io.defaults(); err != nil || io.Conns != 10000 || io.Settle < 3*time.Second {
		t.Errorf("idle --bar: %v %+v", err, io)
	}
	do := Options{Scenario: "durable", Bar: true}
	if err := do.defaults(); err != nil || do.Rate != 2000 {
		t.Errorf("durable --bar: %v %+v", err, do)
	}
	if err := (&Options{Scenario: "chat", Bar: true}).defaults(); err == nil {
		t.Error("chat --bar accepted")
	}
	if err := (&Options{Scenario: "nope"}).defaults(); err == nil {
		t.Error("unknown scenario accepted")
	}
	if err := (&Options{Scenario: "idle", Conns: 1 << 30}).defaults(); err == nil {
		t.Error("unbounded run accepted")
	}
	for _, n := range []int{-1, 11, 1 << 30} {
		if err := (&Options{Scenario: "fanout", Refine: n}).defaults(); err == nil {
			t.Errorf("--refine %d accepted", n)
		}
	}
}

func TestWriteTable(t *testing.T) {
	rs := []*Result{
		{Scenario: "idle", Connected: 10, Rooms: 2, RSSBefore: 1 << 20, RSSAfter: 2 << 20, RSSPerConn: 104857.6, LastGood: -1},
		{Scenario: "fanout", Connected: 10, Rooms: 2, LastGood: 0, Steps: []Step{{Rate: 10, OK: true}, {Rate: 20, Broke: "p99 60ms > 50ms"}}},
		{Scenario: "durable", Connected: 2, Rooms: 2, LastGood: 0, Steps: []Step{{Rate: 10, OK: true, AckLatency: Latency{Count: 1, P99: 2}}},
			Store: &StoreCheck{Acked: 5, Found: 5}},
	}
	var b strings.Builder
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"fanout#1*", "fanout#2x", "102.4 KB per connection", "broke: p99 60ms", "stored exactly once: 5 of 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// BenchmarkReceive is the load tool's own cost per delivery past the
// read(2): WebSocket framing, the fields it needs and the accounting, with
// four frames per read as when the server coalesces. It must stay well
// under the server's cost per delivery.
func BenchmarkReceive(b *testing.B) {
	w := newWorker(io.Discard)
	w.rx = newRxState(1)
	c := &rconn{spec: connSpec{Room: "1"}, tracks: map[int]*seqTracker{}}
	reads := make([][]byte, 256)
	seq := int64(0)
	for i := range reads {
		for range 4 {
			seq++
			reads[i] = appendServerFrame(reads[i], opText, messageFrame(stamp{Step: 1, Pub: 1, Seq: seq, Sent: time.Now().UnixNano()}))
		}
	}
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(reads[0])))
	for i := 0; b.Loop(); i++ {
		if i%len(reads) == 0 {
			c.tracks = map[int]*seqTracker{}
		}
		w.onData(c, reads[i%len(reads)], now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4), "ns/frame")
	if w.rx.unique == 0 {
		b.Fatal("nothing accounted")
	}
}

func TestBars(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	good := []*Result{
		{Scenario: "idle", Conns: 10000, Connected: 10000, RSSBefore: 50 << 20, RSSAfter: 150 << 20, RSSPerConn: 10 * 1024},
		{Scenario: "fanout", Conns: 10000, Rooms: 100, BodySize: 100, Connected: 10000, LastGood: 1, Steps: []Step{
			{Rate: 1000, OK: true, DeliveriesPerSec: 100000, Latency: Latency{P99: 5}},
			{Rate: 1600, OK: true, DeliveriesPerSec: 159000, Latency: Latency{P99: 20}},
			{Rate: 2400, Broke: "p99 80ms >= 50ms", DeliveriesPerSec: 200000, Latency: Latency{P99: 80}}}},
		{Scenario: "durable", LastGood: 0, Steps: []Step{{Rate: 2000, OK: true, Sent: 20000, Acked: 20000, SendSeconds: 10,
			AckLatency: Latency{Count: 20000, P99: 4}}}, Store: &StoreCheck{Acked: 20000, Found: 20000}},
		{Scenario: "persist", LastGood: 0, Steps: []Step{{Rate: 10000, OK: true, Acked: 600000, SendSeconds: 60}},
			Store: &StoreCheck{Acked: 600000, Found: 600000},
			Persist: &Persist{OfferedRate: 10000, AckedRate: 10000, CaughtUp: true, SinkWritten: map[string]int64{"store": 600000},
				Lag: map[string]*LagStat{"store": {MaxSeconds: 0.5}, "index": {MaxSeconds: 1.9}}}},
	}
	reads := &ReadsResult{LatestP99MS: f(1.5), LatestMessages: 10_000_000, SearchP99MS: f(30), SearchMessages: 1_000_000}
	self := &SelfTestResult{FramesPerCPUSecond: 200000, Unique: 10, Reads: 10}
	rows := Bars(good, []float64{150, 900}, reads, self)
	if len(rows) != 7 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Verdict != "PASS" {
			t.Errorf("%s: %s (%s)", r.Bar, r.Verdict, r.Measured)
		}
	}
	if !strings.Contains(rows[1].Measured, "159000 deliveries/s") {
		t.Errorf("fanout row: %s", rows[1].Measured)
	}
	// The same figures from runs of the wrong shape, or missing, do not pass.
	good[0].Connected = 9000
	good[1].Rooms = 10
	good[3].Persist.Lag["index"].MaxSeconds = 2.5
	rows = Bars(good[:4], []float64{1200}, nil, nil)
	want := []string{"FAIL", "FAIL", "PASS", "FAIL", "NOT RUN", "FAIL", "NOT RUN"}
	for i, r := range rows {
		if r.Verdict != want[i] {
			t.Errorf("%s: %s, want %s (%s)", r.Bar, r.Verdict, want[i], r.Measured)
		}
	}
	// Bar 3's acked rate runs to the last ack, not the last delivery: a
	// late room frame does not fail a server that acked everything in
	// time, and acks that fall behind do.
	durable := good[2]
	durable.Steps[0].Seconds, durable.Steps[0].AckLatency.Max = 10.11, 63.5
	if r := Bars([]*Result{durable}, nil, nil, nil)[2]; r.Verdict != "PASS" {
		t.Errorf("durable with a late delivery: %s (%s)", r.Verdict, r.Measured)
	}
	durable.Steps[0].AckLatency.Max = 400
	if r := Bars([]*Result{durable}, nil, nil, nil)[2]; r.Verdict != "FAIL" || !strings.Contains(r.Measured, "acked only") {
		t.Errorf("durable with acks 400 ms behind: %s (%s)", r.Verdict, r.Measured)
	}
	var b strings.Builder
	if err := WriteBars(&b, rows); err != nil || !strings.Contains(b.String(), "NOT RUN") {
		t.Errorf("table: %v\n%s", err, b.String())
	}
}

func TestParseReadsBench(t *testing.T) {
	out := `goos: linux
BenchmarkReadMessages/latest-50-2         	     500	    412345 ns/op	       850.0 p50-µs	      1650 p99-µs
BenchmarkReadMessages/before-50-2         	     500	    412345 ns/op	       900.0 p50-µs	      9999 p99-µs
BenchmarkSearch/word-1-rooms-2            	     500	    100 ns/op	       100.0 p50-µs	      2000 p99-µs	  12 matches
BenchmarkSearch/phrase-1000-rooms-2       	     500	    100 ns/op	       5000 p50-µs	     42000 p99-µs	  900 matches
PASS
`
	r, err := ParseReadsBench(strings.NewReader(out), 10_000_000, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if r.LatestP99MS == nil || *r.LatestP99MS != 1.65 || r.SearchP99MS == nil || *r.SearchP99MS != 42 || r.SearchCases != 2 || r.SearchCase != "phrase-1000-rooms-2" {
		t.Fatalf("%+v", r)
	}
	rows := Bars(nil, nil, r, nil)
	if rows[4].Verdict != "PASS" {
		t.Errorf("bar 5: %+v", rows[4])
	}
	r.Partial = true
	if rows := Bars(nil, nil, r, nil); rows[4].Verdict != "PARTIAL" {
		t.Errorf("partial bar 5: %+v", rows[4])
	}
	if _, err := ParseReadsBench(strings.NewReader("PASS\n"), 1, 1); err == nil {
		t.Error("empty output accepted")
	}
}

// Refinement narrows the gap between the last good step and the first
// broken one to within 5%, never tries outside it, and stops on an error.
func TestBisect(t *testing.T) {
	const capacity = 1234.0
	var tried []float64
	try := func(rate float64) (bool, error) {
		if rate <= 1000 || rate >= 1600 {
			t.Fatalf("tried %v, outside the gap", rate)
		}
		tried = append(tried, rate)
		return rate <= capacity, nil
	}
	if err := bisect(1000, 1600, 10, try); err != nil {
		t.Fatal(err)
	}
	// 1300 x, 1150 ok, 1225 ok, 1263 x, then 1225..1263 is within 5%.
	want := []float64{1300, 1150, 1225, 1263}
	if fmt.Sprint(tried) != fmt.Sprint(want) {
		t.Fatalf("tried %v, want %v", tried, want)
	}
	tried = nil
	if err := bisect(1000, 1600, 2, try); err != nil || len(tried) != 2 {
		t.Fatalf("bounded to 2 steps: tried %v, %v", tried, err)
	}
	for _, gap := range [][2]float64{{0, 1600}, {1000, 0}, {1000, 1040}} {
		if err := bisect(gap[0], gap[1], 5, func(float64) (bool, error) { t.Fatalf("tried a step for gap %v", gap); return false, nil }); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	if err := bisect(1000, 1600, 5, func(float64) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Fatalf("error not returned: %v", err)
	}
}

// With refinement steps the fanout bar reports the best good step and the
// lowest rate that broke, whatever order they ran in.
func TestBarsRefinedFanout(t *testing.T) {
	r := &Result{Scenario: "fanout", Conns: 10000, Rooms: 100, BodySize: 100, Connected: 10000, LastGood: 3, Steps: []Step{
		{Rate: 500, OK: true, DeliveriesPerSec: 50000, Latency: Latency{P99: 10}},
		{Rate: 1000, Broke: "p99 400ms >= 50ms", DeliveriesPerSec: 90000, Latency: Latency{P99: 400}},
		{Rate: 750, Broke: "p99 60ms >= 50ms", DeliveriesPerSec: 74000, Latency: Latency{P99: 60}},
		{Rate: 625, OK: true, DeliveriesPerSec: 62500, Latency: Latency{P99: 30}},
	}}
	row := Bars([]*Result{r}, nil, nil, nil)[1]
	if !strings.Contains(row.Measured, "62500 deliveries/s at 625 sends/s") || !strings.Contains(row.Measured, "broke at 750 sends/s: p99 60ms") {
		t.Fatalf("fanout row: %s", row.Measured)
	}
}

// Every flag refuses a value no run means with an error naming it, before
// anything connects; 0 still takes the default.
func TestOptionsRefuseNonsense(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		o    Options
		flag string
	}{
		{Options{Conns: -1}, "--conns"},
		{Options{Rooms: -5}, "--rooms"},
		{Options{RoomSize: -1}, "--room-size"},
		{Options{Steps: -1}, "--steps"},
		{Options{Refine: -1}, "--refine"},
		{Options{BodySize: -1}, "--body-size"},
		{Options{BodySize: 1 << 30}, "--body-size"},
		{Options{ConnsPerUser: -1}, "--conns-per-user"},
		{Options{Concurrency: -64}, "--concurrency"},
		{Options{MaxErrors: -1}, "--max-errors"},
		{Options{PID: -1}, "--pid"},
		{Options{Workers: -1}, "--workers"},
		{Options{Workers: 100000}, "--workers"},
		{Options{Duration: -time.Second}, "--duration"},
		{Options{MaxP99: -time.Millisecond}, "--max-p99"},
		{Options{Drain: -time.Second}, "--drain"},
		{Options{Drain: time.Hour}, "--drain"},
		{Options{Settle: -time.Second}, "--settle"},
		{Options{LagWait: -time.Second}, "--lag-wait"},
		{Options{Sample: -time.Second}, "--sample"},
		{Options{Rate: -1}, "--rate"},
		{Options{Rate: nan}, "--rate"},
		{Options{Rate: inf}, "--rate"},
		{Options{Rate: 1e12}, "--rate"},
		{Options{RateFactor: 0.5}, "--rate-factor"},
		{Options{RateFactor: 1}, "--rate-factor"},
		{Options{RateFactor: nan}, "--rate-factor"},
		{Options{MaxLoss: 2}, "--max-loss"},
		{Options{MaxLoss: -0.1}, "--max-loss"},
		{Options{MaxLoss: nan}, "--max-loss"},
		{Options{Rates: []float64{100, nan}}, "--rates"},
		{Options{Rates: []float64{100, inf}}, "--rates"},
		{Options{Rates: []float64{100, 1e12}}, "--rates"},
		{Options{Rates: []float64{0}}, "--rates"},
		{Options{Rates: []float64{200, 100}}, "--rates"},
	} {
		c.o.Scenario = "fanout"
		err := c.o.defaults()
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%+v: err %v, want one naming %s", c.o, err, c.flag)
		}
	}
	// Zeros are the defaults, and the largest accepted values pass.
	ok := Options{Scenario: "fanout", Workers: MaxWorkers, MaxLoss: 1, RateFactor: 1.5, Drain: 2 * time.Minute, Rate: MaxRate}
	if err := ok.defaults(); err != nil {
		t.Fatalf("%+v: %v", ok, err)
	}
}

func TestSelfTestRefusesNonsense(t *testing.T) {
	for _, o := range []SelfTestOptions{
		{Conns: -1}, {Rooms: -1}, {Workers: -1}, {Workers: MaxWorkers + 1}, {Duration: -time.Second},
		{Coalesce: -1}, {Rate: -1}, {Rate: math.NaN()}, {Rate: math.Inf(1)}, {Rate: 1e12}, {Conns: 1 << 30},
	} {
		o.InProcess = true
		if r, err := SelfTest(context.Background(), o); err == nil {
			t.Errorf("%+v accepted: %+v", o, r)
		}
	}
}

func TestParseReadyMS(t *testing.T) {
	got, err := parseReadyMS("48, 60,55.5")
	if err != nil || fmt.Sprint(got) != "[48 60 55.5]" {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := parseReadyMS(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
	// A negative or non-numeric time must not pass bar 6.
	for _, s := range []string{"-5", "NaN", "Inf", "48,abc", "1e999", strings.Repeat("9", 400)} {
		if got, err := parseReadyMS(s); err == nil {
			t.Errorf("%q accepted: %v", s, got)
		}
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := checkWritable("--json", ""); err != nil {
		t.Fatal(err)
	}
	if err := checkWritable("--json", dir+"/out.json"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind %v", entries)
	}
	for _, p := range []string{dir + "/missing/out.json", dir, "/proc/out.json"} {
		if err := checkWritable("--json", p); err == nil || !strings.Contains(err.Error(), "--json") {
			t.Errorf("%s: err %v", p, err)
		}
	}
}

// Bar 2 sets chatd's CPU per delivery against the self-test's bare sender
// from the same run, and says when the machine itself is below the bar;
// the verdict still comes from the fanout run alone.
func TestBarsFanoutCeiling(t *testing.T) {
	r := &Result{Scenario: "fanout", Conns: 10000, Rooms: 100, BodySize: 100, Connected: 10000, LastGood: 0, Steps: []Step{
		{Rate: 800, OK: true, DeliveriesPerSec: 80000, Latency: Latency{P99: 20}, ServerCPUSeconds: 6, Tally: Tally{Unique: 500000}},
	}}
	slow := &SelfTestResult{FramesPerCPUSecond: 300000, SenderFramesPerCPUSecond: 100000}
	row := Bars([]*Result{r}, nil, nil, slow)[1]
	for _, want := range []string{"100000 frames per CPU-second (10.00 µs each)", "chatd used 12.00 µs per delivery (1.20x)", "below the bar"} {
		if !strings.Contains(row.Measured, want) {
			t.Errorf("missing %q: %s", want, row.Measured)
		}
	}
	if row.Verdict != "FAIL" {
		t.Errorf("verdict %s", row.Verdict)
	}
	fast := &SelfTestResult{FramesPerCPUSecond: 300000, SenderFramesPerCPUSecond: 250000}
	if row := Bars([]*Result{r}, nil, nil, fast)[1]; strings.Contains(row.Measured, "below the bar") || !strings.Contains(row.Measured, "(3.00x)") {
		t.Errorf("fast machine: %s", row.Measured)
	}
	// No self-test, or no sender CPU (in-process): nothing added.
	for _, self := range []*SelfTestResult{nil, {FramesPerCPUSecond: 300000}} {
		if row := Bars([]*Result{r}, nil, nil, self)[1]; strings.Contains(row.Measured, "machine") {
			t.Errorf("unmeasured ceiling reported: %s", row.Measured)
		}
	}
}
