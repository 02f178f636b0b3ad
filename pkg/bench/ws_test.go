package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestFrameConnSplits feeds the same frames cut at every byte boundary: the
// messages must come out whole, once, in order.
func TestFrameConnSplits(t *testing.T) {
	var stream []byte
	want := []string{"a", strings.Repeat("b", 200), strings.Repeat("c", 70000), "d"}
	for _, m := range want[:3] {
		stream = appendServerFrame(stream, opText, []byte(m))
	}
	stream = appendServerFrame(stream, opPing, []byte("pp"))
	// "d" in two fragments.
	stream = append(stream, 0x01, 0x00)      // text, not FIN, empty
	stream = append(stream, 0x80, 0x01, 'd') // continuation, FIN
	for _, cut := range []int{1, 2, 3, 7, 129, 4096, len(stream)} {
		var f frameConn
		var got []string
		var pings int
		for b := stream; len(b) > 0; {
			n := min(cut, len(b))
			chunk := append([]byte(nil), b[:n]...) // the read buffer is reused
			b = b[n:]
			err := f.feed(chunk, func(op byte, p []byte) { got = append(got, string(p)) },
				func(op byte, p []byte) {
					if op == opPing && string(p) == "pp" {
						pings++
					}
				})
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
		}
		if len(got) != len(want) || pings != 1 || len(f.pending) != 0 {
			t.Fatalf("cut %d: %d messages, %d pings, %d pending", cut, len(got), pings, len(f.pending))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("cut %d: message %d is %d bytes, want %d", cut, i, len(got[i]), len(want[i]))
			}
		}
	}
	var f frameConn
	if err := f.feed([]byte{0x80 | 0x3, 0}, func(byte, []byte) {}, func(byte, []byte) {}); err == nil {
		t.Error("reserved opcode accepted")
	}
}

func TestClientFrameMasked(t *testing.T) {
	p := []byte(`{"type":"join","room_id":"1"}`)
	b := appendClientFrame(nil, opText, p)
	if b[1]&0x80 == 0 || bytes.Contains(b, p) {
		t.Fatalf("client frame not masked: %q", b)
	}
	fin, op, got, n, err := nextFrame(b)
	if err != nil || !fin || op != opText || n != len(b) || string(got) != string(p) {
		t.Fatalf("round trip: %v %v %q %d %v", fin, op, got, n, err)
	}
	big := bytes.Repeat([]byte("x"), 70000)
	if _, _, got, _, err := nextFrame(appendClientFrame(nil, opBin, big)); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("64 KB+ frame: %v", err)
	}
}

func TestParseProm(t *testing.T) {
	text := `# HELP chatd_log_lag x
# TYPE chatd_log_lag gauge
chatd_log_lag{group="index"} 12
chatd_log_lag{group="store"} 0
chatd_log_appended_total{backend="jetstream"} 1.5e+06
go_goroutines 7
`
	ms, err := parseProm(strings.NewReader(text))
	if err != nil || len(ms) != 4 {
		t.Fatalf("%d samples, %v", len(ms), err)
	}
	if ms[0].name != "chatd_log_lag" || ms[0].labels["group"] != "index" || ms[0].value != 12 {
		t.Errorf("first: %+v", ms[0])
	}
	if ms[2].value != 1.5e6 || ms[3].name != "go_goroutines" || ms[3].value != 7 {
		t.Errorf("%+v %+v", ms[2], ms[3])
	}
}

// TestLagSeconds: the lag in seconds is how long ago the log held what the
// group has committed now.
func TestLagSeconds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := &lagSampler{series: []appendedAt{{t0, 0}, {t0.Add(time.Second), 1000}, {t0.Add(2 * time.Second), 2000}}}
	now := t0.Add(2 * time.Second)
	for _, c := range []struct{ committed, want float64 }{{2000, 0}, {1500, 0.5}, {1000, 1}, {250, 1.75}, {0, 2}} {
		if got := l.behind(now, c.committed); got < c.want-1e-6 || got > c.want+1e-6 {
			t.Errorf("committed %.0f: %.3fs behind, want %.3f", c.committed, got, c.want)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "1234 (chatd (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0\n"
	if s, err := parseStatCPU([]byte(stat)); err != nil || s != 3.25 {
		t.Errorf("cpu = %v, %v; want 3.25", s, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
}

// TestSelfTestSmall runs the receive self-test in-process, tiny: every
// frame the sender wrote must arrive once.
func TestSelfTestSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("opens sockets")
	}
	r, err := SelfTest(context.Background(), SelfTestOptions{Conns: 60, Rooms: 3, Workers: 2, Duration: 500 * time.Millisecond,
		Rate: 60, Coalesce: 3, InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Expected == 0 || r.Unique != r.Expected || r.Lost != 0 || r.Dups != 0 || r.Reads == 0 {
		t.Fatalf("%+v", r)
	}
	if r.Latency.Count != r.Unique {
		t.Errorf("%d latencies for %d frames", r.Latency.Count, r.Unique)
	}
}
