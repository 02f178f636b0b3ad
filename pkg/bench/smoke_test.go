package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/bench"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/config"
)

// startChatd runs a whole chatd in this process on port 0 with a temp data
// dir and returns its base URL.
func startChatd(t *testing.T, sets map[string]string) string {
	t.Helper()
	all := map[string]string{"data_dir": t.TempDir(), "http.addr": "127.0.0.1:0", "limits.send_rate": "0", "limits.login_rate": "0", "log.level": "warn"}
	for k, v := range sets {
		all[k] = v
	}
	cfg, err := config.Load("", nil, all)
	if err != nil {
		t.Fatal(err)
	}
	m := app.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
		_ = m.Close()
	})
	return "http://" + m.Addr()
}

func progress(t *testing.T) io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return nil
}

// TestScenariosSmoke runs every scenario tiny against a real server and checks
// only correctness: everything connects, nothing is lost or doubled, every
// acked message is stored once. Never timing.
func TestScenariosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	base := startChatd(t, nil)
	for _, sc := range bench.Scenarios {
		t.Run(sc, func(t *testing.T) {
			o := bench.Options{
				Scenario: sc, URL: base, Conns: 20, Duration: 2 * time.Second, Settle: 200 * time.Millisecond,
				Rate: 40, Steps: 2, MaxP99: time.Hour, Drain: 30 * time.Second, LagWait: 30 * time.Second, Sample: 100 * time.Millisecond,
				PID: os.Getpid(), Workers: 2, InProcess: true, Progress: progress(t),
			}
			if sc == "fanout" || sc == "idle" || sc == "connect" {
				o.Rooms = 4
			}
			res, err := bench.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 20 || res.ConnectErrors != 0 || res.Dropped != 0 {
				t.Fatalf("connected %d, errors %d (%s), dropped %d", res.Connected, res.ConnectErrors, res.FirstConnError, res.Dropped)
			}
			if res.RSSAfter <= 0 {
				t.Errorf("no memory reading from --pid")
			}
			switch sc {
			case "idle", "connect":
				if len(res.Steps) != 0 {
					t.Errorf("%s sent messages", sc)
				}
				return
			case "fanout":
				if len(res.Steps) != 2 || res.LastGood != 1 {
					t.Errorf("fanout steps %d, last good %d: %+v", len(res.Steps), res.LastGood, res.Steps)
				}
			}
			for i, s := range res.Steps {
				if s.Sent == 0 || s.Acked != s.Sent || s.SendErrors != 0 {
					t.Errorf("step %d: sent %d acked %d errors %d %v", i, s.Sent, s.Acked, s.SendErrors, res.ErrCodes)
				}
				if s.Tally.Expected == 0 || s.Lost != 0 || s.Tally.Dups != 0 || s.Tally.Unique != s.Tally.Expected {
					t.Errorf("step %d: %+v lost %d", i, s.Tally, s.Lost)
				}
				if s.Latency.Count != s.Tally.Unique {
					t.Errorf("step %d: %d latencies for %d deliveries", i, s.Latency.Count, s.Tally.Unique)
				}
				if runtime.GOOS == "linux" && (s.ServerCPUSeconds <= 0 || s.CPUPerDelivery() <= 0) {
					t.Errorf("step %d: no server CPU reading from --pid (%v s)", i, s.ServerCPUSeconds)
				}
			}
			if sc == "durable" || sc == "persist" {
				st := res.Store
				if st == nil || st.Acked == 0 || st.Acked != res.Steps[0].Acked || st.Found != st.Acked || st.Missing != 0 || st.Doubled != 0 || st.DupSends != 0 || st.Pages == 0 {
					t.Errorf("store check %+v", st)
				}
			}
			if sc == "persist" {
				p := res.Persist
				if p == nil {
					t.Fatal("no persist result")
				}
				if !p.CaughtUp || p.Samples == 0 || p.AppendedBy == "" {
					t.Errorf("persist %+v", p)
				}
				for _, g := range []string{"store", "index"} {
					if l := p.Lag[g]; l == nil || l.Last != 0 {
						t.Errorf("%s lag %+v, want sampled and back to 0", g, l)
					}
				}
				if n, ok := p.SinkWritten["store"]; !ok || n < res.Store.Acked {
					t.Errorf("store consumer wrote %d (%v) of %d acked", n, ok, res.Store.Acked)
				}
				if p.OfferedRate != 40 || p.AckedRate <= 0 {
					t.Errorf("rates %+v", p)
				}
			}
			if sc == "chat" && res.Rooms != 4 {
				t.Errorf("chat rooms %d, want 20/5", res.Rooms)
			}
		})
	}
}

// TestRateLimitedIsExplained runs against a server with its default send
// limits: the bench must stop with the hint to turn them off.
func TestRateLimitedIsExplained(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	base := startChatd(t, map[string]string{"limits.send_rate": "10", "limits.send_burst": "20"})
	_, err := bench.Run(context.Background(), bench.Options{
		Scenario: "chat", URL: base, Conns: 10, Rate: 1000, Duration: time.Second, InProcess: true, Progress: progress(t),
	})
	if !errors.Is(err, bench.ErrRateLimited) {
		t.Fatalf("err = %v, want ErrRateLimited", err)
	}
}

func TestRefusesRemote(t *testing.T) {
	_, err := bench.Run(context.Background(), bench.Options{Scenario: "idle", URL: "http://192.0.2.1:8080"})
	if err == nil {
		t.Fatal("non-loopback target accepted")
	}
}

// With the server's metrics on a listener of their own (http.metrics_addr),
// persist finds the store and index lag through --metrics-url; without it
// the public URL has no lag to read, and the run says so.
func TestMetricsURL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	maddr := fmt.Sprintf("127.0.0.1:%d", chattest.FreePort(t))
	base := startChatd(t, map[string]string{"http.metrics_addr": maddr})
	run := func(metricsURL string, lagWait time.Duration) *bench.Persist {
		res, err := bench.Run(context.Background(), bench.Options{
			Scenario: "persist", URL: base, MetricsURL: metricsURL, Conns: 4, Duration: time.Second, Rate: 20,
			LagWait: lagWait, Sample: 100 * time.Millisecond, PID: os.Getpid(), Workers: 1, InProcess: true, Progress: progress(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Persist == nil {
			t.Fatal("no persist result")
		}
		return res.Persist
	}
	if p := run("http://"+maddr+"/metrics", 20*time.Second); p.NoLagMetric || p.Samples == 0 || !p.CaughtUp {
		t.Errorf("with --metrics-url: %+v", p)
	}
	// Without lag to read it waits out --lag-wait.
	if p := run("", time.Second); !p.NoLagMetric {
		t.Errorf("without --metrics-url the public listener served the lag: %+v", p)
	}
	if _, err := bench.Run(context.Background(), bench.Options{Scenario: "persist", URL: base, MetricsURL: "http://192.0.2.1:9100/metrics"}); err == nil || !strings.Contains(err.Error(), "--metrics-url") {
		t.Errorf("a remote --metrics-url without --allow-remote: %v", err)
	}
}
