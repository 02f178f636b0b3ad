package app_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// metricValue returns the sum of the samples of a metric (any labels) in a
// Prometheus text scrape, or -1 if absent.
func metricValue(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	ms := re.FindAllStringSubmatch(body, -1)
	if ms == nil {
		return -1
	}
	sum := 0.0
	for _, m := range ms {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

func TestMetricsMoveWithEvents(t *testing.T) {
	s := startServer(t, "", map[string]string{"limits.send_rate": "1", "limits.send_burst": "1", "limits.send_period": "1m"})
	scrape := func() string {
		r := do(t, "GET", s.base+"/metrics", "", nil)
		if r.status != 200 {
			t.Fatalf("metrics: %d", r.status)
		}
		return string(r.body)
	}
	before := scrape()
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "chatd_gateway_connections", "chatd_ingest_appended_total"} {
		if metricValue(before, name) < 0 {
			t.Fatalf("metric %s missing", name)
		}
	}
	a := s.newUser(t, "met")
	room := a.createRoom("metrics", false)
	w := a.dial("/api/v1/ws")
	w.join(room.ID)
	w.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "counted", "nonce": "1"})
	w.next("ack")
	w.next("message")
	w.send(map[string]string{"type": "send", "room_id": room.ID.String(), "body": "refused", "nonce": "2"})
	if f := w.next("error"); f.Code != "rate_limited" {
		t.Fatalf("want rate_limited, got %+v", f)
	}
	after := scrape()
	moved := map[string]float64{
		"chatd_gateway_connections":      1,
		"chatd_gateway_joins_total":      1,
		"chatd_ingest_appended_total":    1,
		"chatd_send_ack_seconds_count":   1,
		"chatd_rate_limited_total":       1,
		"chatd_gateway_deliveries_total": 1,
	}
	for name, delta := range moved {
		b, a := max(metricValue(before, name), 0), metricValue(after, name)
		if a-b < delta {
			t.Errorf("%s moved %v -> %v, want +%v", name, b, a, delta)
		}
	}
	eventually(t, "store and index metrics to count the message", func() bool {
		body := scrape()
		return metricValue(body, "chatd_sink_messages_total") >= 2 && metricValue(body, "chatd_log_lag") == 0
	})
}

func TestReadinessFollowsBackends(t *testing.T) {
	// An external Redis this test can stop and start again on the same port.
	rs := miniredis.NewMiniRedis()
	if err := rs.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := rs.Addr()
	t.Cleanup(func() { rs.Close() })
	s := startServer(t, "", map[string]string{"redis.url": "redis://" + addr + "/0"})
	ready := func() int { return do(t, "GET", s.base+"/readyz", "", nil).status }
	if got := ready(); got != 200 {
		t.Fatalf("readyz with redis up: %d", got)
	}
	rs.Close()
	eventually(t, "readyz to fail with redis down", func() bool { return ready() == 503 })
	if r := do(t, "GET", s.base+"/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz must stay up while a backend is down: %d", r.status)
	}
	if err := rs.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readyz to recover with redis back", func() bool { return ready() == 200 })
}

// debug.pprof_addr serves pprof on its own listener, never on the public one.
func TestPprofOptIn(t *testing.T) {
	off := startServer(t, "", nil)
	// The public listener's "/" is the web UI, which answers any path.
	if r := do(t, "GET", off.base+"/debug/pprof/goroutine?debug=1", "", nil); strings.Contains(string(r.body), "goroutine profile") {
		t.Fatal("pprof answers on the public listener")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	on := startServer(t, "", map[string]string{"debug.pprof_addr": addr})
	if r := do(t, "GET", "http://"+addr+"/debug/pprof/goroutine?debug=1", "", nil); r.status != 200 || !strings.Contains(string(r.body), "goroutine profile") {
		t.Fatalf("pprof: %d %.100s", r.status, r.body)
	}
	if r := do(t, "GET", on.base+"/debug/pprof/goroutine?debug=1", "", nil); strings.Contains(string(r.body), "goroutine profile") {
		t.Fatal("pprof answers on the public listener")
	}
}

// With http.metrics_addr set, /metrics is served there (with the health
// probes) and no longer on the public listener, which keeps its probes.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	s := startServer(t, "", map[string]string{"http.metrics_addr": "127.0.0.1:0"})
	priv := "http://" + s.m.MetricsAddr()
	if priv == "http://" {
		t.Fatal("no metrics listener")
	}
	if r := do(t, "GET", priv+"/metrics", "", nil); r.status != 200 || metricValue(string(r.body), "go_goroutines") < 0 {
		t.Fatalf("metrics on http.metrics_addr: %d", r.status)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		for _, base := range []string{priv, s.base} {
			if r := do(t, "GET", base+p, "", nil); r.status != 200 {
				t.Errorf("%s%s: %d", base, p, r.status)
			}
		}
	}
	// The public listener serves the web UI for unknown paths; /metrics
	// must not be the Prometheus text there.
	if r := do(t, "GET", s.base+"/metrics", "", nil); strings.Contains(string(r.body), "go_goroutines") {
		t.Fatal("/metrics still served on the public listener")
	}
	if r := do(t, "GET", priv+"/api/v1/rooms", "", nil); r.status != 404 {
		t.Errorf("the API on the metrics listener: %d, want 404", r.status)
	}
}
