package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chatd/chatd/pkg/metrics"
)

// scrape fetches /metrics through the real handler, as Prometheus would.
func scrape(tb testing.TB, m *metrics.Metrics) string {
	tb.Helper()
	srv := httptest.NewServer(m.Handler())
	tb.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// compare checks the named metrics of one scrape against the expected
// exposition text (HELP and TYPE lines included).
func compare(tb testing.TB, m *metrics.Metrics, want string, names ...string) {
	tb.Helper()
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		tb.Error(err)
	}
}

func TestHandlerServesRuntimeAndProcessMetrics(t *testing.T) {
	m := metrics.New()
	body := scrape(t, m)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "chatd_send_ack_seconds_bucket", "promhttp_metric_handler_requests_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader("")); err == nil {
		t.Error("compare against nothing passed: the registry is empty")
	}
}

func TestHandlerTwice(t *testing.T) {
	m := metrics.New()
	scrape(t, m)
	body := scrape(t, m) // a second Handler on the same registry
	if !strings.Contains(body, `promhttp_metric_handler_requests_total{code="200"} 1`) {
		t.Errorf("second handler does not share the request counter:\n%s", body)
	}
}

func TestMetricNamesLint(t *testing.T) {
	m := metrics.New()
	m.Gateway(func() metrics.GatewayStats { return metrics.GatewayStats{} })
	m.Log("jetstream", func() metrics.LogStats { return metrics.LogStats{} })
	m.Ingest(func() metrics.IngestStats { return metrics.IngestStats{} })
	m.Sink("store", func() metrics.SinkStats { return metrics.SinkStats{} })
	m.LogLag("store", func(context.Context) (int64, error) { return 0, nil })
	m.BuildInfo("v1.2.3", "abc", "2026-01-01")
	m.ObserveAck(time.Millisecond)
	m.ObserveBatch("store", 10, time.Millisecond)
	m.RateLimited("send")
	m.BackendError("postgres")
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "chatd_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestGatewayCountersAreReadAtScrape(t *testing.T) {
	m := metrics.New()
	var mu sync.Mutex
	s := metrics.GatewayStats{ConnsCurrent: 2, ConnsTotal: 5, Rooms: 1, Joins: 3, FramesIn: 10, FramesOut: 20, Fanout: 7}
	m.Gateway(func() metrics.GatewayStats { mu.Lock(); defer mu.Unlock(); return s })

	compare(t, m, `
# HELP chatd_gateway_connections Open WebSocket connections.
# TYPE chatd_gateway_connections gauge
chatd_gateway_connections 2
# HELP chatd_gateway_deliveries_total Room frames queued to connections (fanout).
# TYPE chatd_gateway_deliveries_total counter
chatd_gateway_deliveries_total 7
# HELP chatd_gateway_slow_consumer_disconnects_total Connections closed because they fell a whole send queue behind (1013).
# TYPE chatd_gateway_slow_consumer_disconnects_total counter
chatd_gateway_slow_consumer_disconnects_total 0
`, "chatd_gateway_connections", "chatd_gateway_deliveries_total", "chatd_gateway_slow_consumer_disconnects_total")

	// The component moves on; the next scrape shows it without any call
	// into this package.
	mu.Lock()
	s.ConnsCurrent, s.Fanout, s.SlowConsumers = 1, 12, 1
	mu.Unlock()
	compare(t, m, `
# HELP chatd_gateway_connections Open WebSocket connections.
# TYPE chatd_gateway_connections gauge
chatd_gateway_connections 1
# HELP chatd_gateway_deliveries_total Room frames queued to connections (fanout).
# TYPE chatd_gateway_deliveries_total counter
chatd_gateway_deliveries_total 12
# HELP chatd_gateway_slow_consumer_disconnects_total Connections closed because they fell a whole send queue behind (1013).
# TYPE chatd_gateway_slow_consumer_disconnects_total counter
chatd_gateway_slow_consumer_disconnects_total 1
`, "chatd_gateway_connections", "chatd_gateway_deliveries_total", "chatd_gateway_slow_consumer_disconnects_total")

	if body := scrape(t, m); !strings.Contains(body, "chatd_gateway_frames_out_total 20") {
		t.Errorf("scrape lacks chatd_gateway_frames_out_total 20:\n%s", body)
	}
}

func TestSnapshotIsTakenOncePerScrape(t *testing.T) {
	m := metrics.New()
	var calls atomic.Int64
	m.Gateway(func() metrics.GatewayStats { calls.Add(1); return metrics.GatewayStats{} })
	scrape(t, m)
	if n := calls.Load(); n != 1 {
		t.Errorf("stats called %d times in one scrape, want 1", n)
	}
}

func TestLogIngestAndSinkCounters(t *testing.T) {
	m := metrics.New()
	var log metrics.LogStats
	var in metrics.IngestStats
	store, index := metrics.SinkStats{}, metrics.SinkStats{}
	m.Log("kafka", func() metrics.LogStats { return log })
	m.Ingest(func() metrics.IngestStats { return in })
	m.Sink("store", func() metrics.SinkStats { return store })
	m.Sink("index", func() metrics.SinkStats { return index })

	compare(t, m, `
# HELP chatd_log_appended_total Messages appended durably to the message log.
# TYPE chatd_log_appended_total counter
chatd_log_appended_total{backend="kafka"} 0
`, "chatd_log_appended_total")

	log.Appended, log.Committed = 100, 90
	in.Received, in.Appended, in.RejectedBusy, in.BufferLen = 105, 100, 5, 3
	store.Batches, store.Messages, store.LastBatchSize, store.LastBatchDuration = 4, 90, 30, 1500*time.Millisecond
	index.Errors = 2

	compare(t, m, `
# HELP chatd_log_appended_total Messages appended durably to the message log.
# TYPE chatd_log_appended_total counter
chatd_log_appended_total{backend="kafka"} 100
# HELP chatd_ingest_rejected_total Sends refused because the ingest buffer was full (backpressure).
# TYPE chatd_ingest_rejected_total counter
chatd_ingest_rejected_total 5
# HELP chatd_ingest_queued Sends waiting in the ingest buffer.
# TYPE chatd_ingest_queued gauge
chatd_ingest_queued 3
# HELP chatd_sink_messages_total Messages written to the sink's backend and committed.
# TYPE chatd_sink_messages_total counter
chatd_sink_messages_total{sink="index"} 0
chatd_sink_messages_total{sink="store"} 90
# HELP chatd_sink_errors_total Failed batch writes (each is retried).
# TYPE chatd_sink_errors_total counter
chatd_sink_errors_total{sink="index"} 2
chatd_sink_errors_total{sink="store"} 0
# HELP chatd_sink_last_batch_seconds Time the last successful batch write took.
# TYPE chatd_sink_last_batch_seconds gauge
chatd_sink_last_batch_seconds{sink="index"} 0
chatd_sink_last_batch_seconds{sink="store"} 1.5
`, "chatd_log_appended_total", "chatd_ingest_rejected_total", "chatd_ingest_queued", "chatd_sink_messages_total", "chatd_sink_errors_total", "chatd_sink_last_batch_seconds")
}

func TestLogLagPolledAtScrape(t *testing.T) {
	m := metrics.New()
	var lag int64 = 42
	var fail bool
	m.LogLag("store", func(ctx context.Context) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("lag polled without a deadline")
		}
		if fail {
			return 0, errors.New("broker down")
		}
		return lag, nil
	})
	m.LogLag("index", func(ctx context.Context) (int64, error) { return 7, nil })

	const names = "chatd_log_lag chatd_log_lag_errors_total"
	compare(t, m, `
# HELP chatd_log_lag Log entries the consumer group has not committed (JetStream: an entry holds one message or more; Kafka: one).
# TYPE chatd_log_lag gauge
chatd_log_lag{group="index"} 7
chatd_log_lag{group="store"} 42
# HELP chatd_log_lag_errors_total Failed polls of the consumer group's lag.
# TYPE chatd_log_lag_errors_total counter
chatd_log_lag_errors_total{group="index"} 0
chatd_log_lag_errors_total{group="store"} 0
`, strings.Fields(names)...)

	lag = 3
	compare(t, m, `
# HELP chatd_log_lag Log entries the consumer group has not committed (JetStream: an entry holds one message or more; Kafka: one).
# TYPE chatd_log_lag gauge
chatd_log_lag{group="index"} 7
chatd_log_lag{group="store"} 3
`, "chatd_log_lag")

	// A failed poll leaves the group's sample out, counts the failure, and
	// the scrape still answers 200 with everything else.
	fail = true
	compare(t, m, `
# HELP chatd_log_lag Log entries the consumer group has not committed (JetStream: an entry holds one message or more; Kafka: one).
# TYPE chatd_log_lag gauge
chatd_log_lag{group="index"} 7
# HELP chatd_log_lag_errors_total Failed polls of the consumer group's lag.
# TYPE chatd_log_lag_errors_total counter
chatd_log_lag_errors_total{group="index"} 0
chatd_log_lag_errors_total{group="store"} 1
`, strings.Fields(names)...)
	if body := scrape(t, m); !strings.Contains(body, `chatd_log_lag{group="index"} 7`) {
		t.Errorf("scrape with a failing group lacks the other group:\n%s", body)
	}
}

func TestLogLagTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for LagTimeout")
	}
	m := metrics.New()
	m.LogLag("store", func(ctx context.Context) (int64, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	start := time.Now()
	scrape(t, m)
	if d := time.Since(start); d > metrics.LagTimeout+2*time.Second {
		t.Errorf("scrape took %s with a hung lag poll; want about %s", d, metrics.LagTimeout)
	}
}

func TestObservedMetrics(t *testing.T) {
	m := metrics.New()
	// Nothing observed yet: vectors have no children, the ack histogram is
	// empty.
	if n, err := testutil.GatherAndCount(m.Registry(), "chatd_rate_limited_total", "chatd_backend_errors_total", "chatd_sink_batch_size"); err != nil || n != 0 {
		t.Fatalf("before: %d series, %v; want 0", n, err)
	}

	m.ObserveAck(300 * time.Microsecond)
	m.ObserveAck(3 * time.Millisecond)
	m.ObserveBatch("store", 100, 20*time.Millisecond)
	m.ObserveBatch("store", 1, time.Millisecond)
	m.ObserveBatch("index", 1000, 200*time.Millisecond)
	m.RateLimited("send")
	m.RateLimited("send")
	m.RateLimited("login")
	m.BackendError("scylla")

	compare(t, m, `
# HELP chatd_rate_limited_total Requests refused by a rate limit, by kind (send, login).
# TYPE chatd_rate_limited_total counter
chatd_rate_limited_total{kind="login"} 1
chatd_rate_limited_total{kind="send"} 2
# HELP chatd_backend_errors_total Failed calls to a backend (postgres, scylla, elasticsearch, kafka, jetstream, redis, nats, sqlite).
# TYPE chatd_backend_errors_total counter
chatd_backend_errors_total{backend="scylla"} 1
`, "chatd_rate_limited_total", "chatd_backend_errors_total")

	body := scrape(t, m)
	for _, want := range []string{
		`chatd_send_ack_seconds_count 2`,
		`chatd_send_ack_seconds_bucket{le="0.0005"} 1`,
		`chatd_send_ack_seconds_bucket{le="0.004"} 2`,
		`chatd_sink_batch_size_count{sink="store"} 2`,
		`chatd_sink_batch_size_sum{sink="store"} 101`,
		`chatd_sink_batch_size_bucket{sink="index",le="1024"} 1`,
		`chatd_sink_batch_size_bucket{sink="index",le="512"} 0`,
		`chatd_sink_batch_seconds_count{sink="index"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}

	m.ObserveAck(time.Second)
	if body := scrape(t, m); !strings.Contains(body, "chatd_send_ack_seconds_count 3") {
		t.Errorf("ack count did not move to 3")
	}
}

func TestBuildInfo(t *testing.T) {
	m := metrics.New()
	m.BuildInfo("v1.2.3", "abc123", "2026-11-27T00:00:00Z")
	compare(t, m, `
# HELP chatd_build_info Always 1; the labels name the running build.
# TYPE chatd_build_info gauge
chatd_build_info{commit="abc123",date="2026-11-27T00:00:00Z",version="v1.2.3"} 1
`, "chatd_build_info")
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *metrics.Metrics
	m.ObserveAck(time.Millisecond)
	m.ObserveBatch("store", 1, time.Millisecond)
	m.RateLimited("send")
	m.BackendError("redis")
	m.BuildInfo("v", "c", "d")
	m.Gateway(func() metrics.GatewayStats { t.Error("stats read on nil Metrics"); return metrics.GatewayStats{} })
	m.Log("jetstream", func() metrics.LogStats { return metrics.LogStats{} })
	m.Ingest(func() metrics.IngestStats { return metrics.IngestStats{} })
	m.Sink("index", func() metrics.SinkStats { return metrics.SinkStats{} })
	m.LogLag("index", func(context.Context) (int64, error) { return 0, nil })
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics handler: %d, want 404", rec.Code)
	}
}

func TestSeparateInstancesDoNotShareState(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.RateLimited("send")
	a.Gateway(func() metrics.GatewayStats { return metrics.GatewayStats{ConnsCurrent: 1} })
	b.Gateway(func() metrics.GatewayStats { return metrics.GatewayStats{ConnsCurrent: 2} })
	if n, _ := testutil.GatherAndCount(b.Registry(), "chatd_rate_limited_total"); n != 0 {
		t.Errorf("b sees a's rate-limit counter")
	}
	if !strings.Contains(scrape(t, b), "chatd_gateway_connections 2") {
		t.Error("b does not report its own gateway")
	}
}

func TestRoomBusDropped(t *testing.T) {
	m := metrics.New()
	var dropped int64
	m.RoomBusDropped(func() int64 { return dropped })
	dropped = 12
	compare(t, m, `
# HELP chatd_room_bus_dropped_total Room frames the in-process room bus dropped because a subscriber fell a whole queue behind.
# TYPE chatd_room_bus_dropped_total counter
chatd_room_bus_dropped_total 12
`, "chatd_room_bus_dropped_total")
}
