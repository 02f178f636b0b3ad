// Package metrics exposes chatd's Prometheus metrics on GET /metrics.
//
// Two kinds of metric live here. Most are read at scrape time from counters
// the components already keep (the gateway's, the log's, ingest's and the
// sinks' Stats), through small snapshot functions, so the hot paths carry no
// Prometheus code at all. The rest (latency and batch histograms, rate-limit
// rejections, backend errors) cannot be derived from a counter and are
// observed directly through small typed methods such as ObserveAck.
//
// Every method is safe on a nil *Metrics and then does nothing, so callers
// and their tests need not create one. This package imports no other chatd
// package: the components may call it without an import cycle, and the
// composition root adapts their Stats types to the snapshot structs here
// (a plain conversion where the fields are the same, as for the gateway's).
package metrics

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "chatd"

// LagTimeout bounds one consumer-lag poll during a scrape, so a slow or
// unreachable log backend delays /metrics by at most this much (the groups
// are polled in parallel).
const LagTimeout = 2 * time.Second

// Metrics owns one Prometheus registry: the Go runtime and process
// collectors, chatd's directly observed metrics and the collectors that read
// component counters at scrape time. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	ack           prometheus.Histogram
	batchSize     *prometheus.HistogramVec
	batchSeconds  *prometheus.HistogramVec
	rateLimited   *prometheus.CounterVec
	backendErrors *prometheus.CounterVec
}

// New returns a Metrics with its own registry (never the global default, so
// several in one test binary do not collide).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "send_ack_seconds",
			Help: "Time from receiving a send to acking it once it is durable in the message log.",
			// 0.5 ms .. ~16 s: an embedded log acks in well under a
			// millisecond, a loaded Kafka cluster in tens of milliseconds,
			// and the top buckets show sends that hit the ingest timeout.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sink_batch_size",
			Help:    "Messages per batch written by a log consumer (store, index).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
		}, []string{"sink"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sink_batch_seconds",
			Help:    "Time to write one batch to the sink's backend (store, index), failed attempts included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"sink"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limited_total",
			Help: "Requests refused by a rate limit, by kind (send, login).",
		}, []string{"kind"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "backend_errors_total",
			Help: "Failed calls to a backend (postgres, scylla, elasticsearch, kafka, jetstream, redis, nats, sqlite).",
		}, []string{"backend"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ack, m.batchSize, m.batchSeconds, m.rateLimited, m.backendErrors,
	)
	return m
}

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format. A collector that fails is left out of the answer rather than
// failing the whole scrape. It may be called more than once (the handlers
// share one request counter). On a nil Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		// Lag polls are bounded by LagTimeout; this bounds everything else.
		Timeout: 10 * time.Second,
	}))
}

// Registry returns the registry, for a test's testutil.GatherAndCompare or
// for registering a collector this package does not define. Nil on a nil
// Metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// ObserveAck records the time from receiving a send to its ack.
func (m *Metrics) ObserveAck(d time.Duration) {
	if m == nil {
		return
	}
	m.ack.Observe(d.Seconds())
}

// ObserveBatch records one batch a sink wrote (or tried to write): its size
// in messages and how long the write took.
func (m *Metrics) ObserveBatch(sink string, size int, d time.Duration) {
	if m == nil {
		return
	}
	m.batchSize.WithLabelValues(sink).Observe(float64(size))
	m.batchSeconds.WithLabelValues(sink).Observe(d.Seconds())
}

// RateLimited counts one request refused by the rate limit of kind, e.g.
// "send" or "login".
func (m *Metrics) RateLimited(kind string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(kind).Inc()
}

// BackendError counts one failed call to backend, e.g. "postgres".
func (m *Metrics) BackendError(backend string) {
	if m == nil {
		return
	}
	m.backendErrors.WithLabelValues(backend).Inc()
}

// BuildInfo exports chatd_build_info{version,commit,date} = 1, the usual way
// to put the running version on a dashboard. Call it once per Metrics.
func (m *Metrics) BuildInfo(version, commit, date string) {
	if m == nil {
		return
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "date": date},
	})
	g.Set(1)
	m.reg.MustRegister(g)
}

// GatewayStats is a snapshot of the gateway's counters. Its fields match
// gateway.Stats, so the composition root converts with
// metrics.GatewayStats(gw.Stats()).
type GatewayStats struct {
	ConnsCurrent  int64 // open connections
	ConnsTotal    int64 // connections accepted since start
	Rooms         int64 // rooms this process is subscribed to
	Joins         int64 // successful joins
	FramesIn      int64 // client frames read
	FramesOut     int64 // server frames written or queued for writing
	BadFrames     int64 // client frames refused as invalid
	SlowConsumers int64 // connections closed with 1013
	Fanout        int64 // room frames queued to connections
	SendsShed     int64 // sends refused unposted: their connection's queue was full or they waited too long
}

// Gateway exports the gateway's counters, read from stats at each scrape.
// Call it once per Metrics.
func (m *Metrics) Gateway(stats func() GatewayStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(newSnapshot(stats, nil,
		gauge("gateway_connections", "Open WebSocket connections.", func(s GatewayStats) int64 { return s.ConnsCurrent }),
		counter("gateway_connections_total", "WebSocket connections accepted.", func(s GatewayStats) int64 { return s.ConnsTotal }),
		gauge("gateway_rooms", "Rooms this gateway is subscribed to.", func(s GatewayStats) int64 { return s.Rooms }),
		counter("gateway_joins_total", "Successful room joins.", func(s GatewayStats) int64 { return s.Joins }),
		counter("gateway_frames_in_total", "Client frames read.", func(s GatewayStats) int64 { return s.FramesIn }),
		counter("gateway_frames_out_total", "Server frames written or queued for writing.", func(s GatewayStats) int64 { return s.FramesOut }),
		counter("gateway_bad_frames_total", "Client frames refused as invalid.", func(s GatewayStats) int64 { return s.BadFrames }),
		counter("gateway_slow_consumer_disconnects_total", "Connections closed because they fell a whole send queue behind (1013).", func(s GatewayStats) int64 { return s.SlowConsumers }),
		counter("gateway_deliveries_total", "Room frames queued to connections (fanout).", func(s GatewayStats) int64 { return s.Fanout }),
		counter("gateway_sends_shed_total", "Sends refused unposted (unavailable, retry with the same nonce): their connection already had 1,024 sends or 1 MB waiting, or they waited longer than gateway.shed_after to be posted.", func(s GatewayStats) int64 { return s.SendsShed }),
	))
}

// RoomBusDropped exports chatd_room_bus_dropped_total, read from dropped
// at each scrape: room frames the in-process room bus dropped because a
// subscriber fell a whole queue behind. Call it once per Metrics.
func (m *Metrics) RoomBusDropped(dropped func() int64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "room_bus_dropped_total",
		Help: "Room frames the in-process room bus dropped because a subscriber fell a whole queue behind.",
	}, func() float64 { return float64(dropped()) }))
}

// LogStats is a snapshot of the durable message log's counters. Its fields
// match jetstream.Stats; a backend that keeps fewer leaves the rest zero.
type LogStats struct {
	Appended     int64 // messages acknowledged by the log
	Entries      int64 // log entries acknowledged (JetStream: up to 64 messages each)
	AppendErrors int64 // failed Append calls
	Duplicates   int64 // messages the log recognised as already stored
	Delivered    int64 // messages handed to consumers (retries included)
	Committed    int64 // messages committed after a successful handle
	HandleErrors int64 // failed handle calls
	DecodeErrors int64 // undecodable entries, skipped
}

// Log exports the message log's counters, labelled backend="jetstream" or
// "kafka", read from stats at each scrape. Call it once per backend.
func (m *Metrics) Log(backend string, stats func() LogStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(newSnapshot(stats, prometheus.Labels{"backend": backend},
		counter("log_appended_total", "Messages appended durably to the message log.", func(s LogStats) int64 { return s.Appended }),
		counter("log_entries_appended_total", "Entries appended durably to the message log; an entry holds one message or more (JetStream: consecutive messages of one ingest batch).", func(s LogStats) int64 { return s.Entries }),
		counter("log_append_errors_total", "Failed appends to the message log.", func(s LogStats) int64 { return s.AppendErrors }),
		counter("log_duplicates_total", "Messages the log recognised as already stored (a retried append).", func(s LogStats) int64 { return s.Duplicates }),
		counter("log_delivered_total", "Messages delivered to consumer groups, redeliveries included.", func(s LogStats) int64 { return s.Delivered }),
		counter("log_committed_total", "Messages committed by consumer groups.", func(s LogStats) int64 { return s.Committed }),
		counter("log_handle_errors_total", "Failed consumer handle calls (retried).", func(s LogStats) int64 { return s.HandleErrors }),
		counter("log_decode_errors_total", "Undecodable log entries skipped.", func(s LogStats) int64 { return s.DecodeErrors }),
	))
}

// IngestStats is a snapshot of the ingest role's counters. Its fields match
// ingest.Stats: metrics.IngestStats(srv.Stats()).
type IngestStats struct {
	Received     int64         // requests taken into the buffer
	Appended     int64         // messages durably appended and acked
	Duplicates   int64         // requests answered with an earlier message of the same nonce
	RejectedBusy int64         // requests refused because the buffer was full
	Invalid      int64         // malformed requests
	Failed       int64         // requests answered unavailable after a failed append
	Batches      int64         // batches processed
	BufferLen    int           // requests waiting now
	Paused       time.Duration // total time batches waited for persistence to catch up
}

// Ingest exports the ingest role's counters, read from stats at each scrape.
// Call it once per Metrics.
func (m *Metrics) Ingest(stats func() IngestStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(newSnapshot(stats, nil,
		counter("ingest_received_total", "Sends taken into the ingest buffer.", func(s IngestStats) int64 { return s.Received }),
		counter("ingest_appended_total", "Sends appended durably to the log and acked.", func(s IngestStats) int64 { return s.Appended }),
		counter("ingest_duplicates_total", "Sends with a repeated nonce, answered with the first message.", func(s IngestStats) int64 { return s.Duplicates }),
		counter("ingest_rejected_total", "Sends refused because the ingest buffer was full (backpressure).", func(s IngestStats) int64 { return s.RejectedBusy }),
		counter("ingest_invalid_total", "Malformed send requests.", func(s IngestStats) int64 { return s.Invalid }),
		counter("ingest_failed_total", "Sends answered unavailable after a failed append.", func(s IngestStats) int64 { return s.Failed }),
		counter("ingest_batches_total", "Batches appended to the message log.", func(s IngestStats) int64 { return s.Batches }),
		gauge("ingest_queued", "Sends waiting in the ingest buffer.", func(s IngestStats) int64 { return int64(s.BufferLen) }),
		secondsTotal("ingest_paused_seconds_total", "Time ingest batches waited for the in-process store and index to catch up (ingest.max_backlog).", func(s IngestStats) time.Duration { return s.Paused }),
	))
}

// SinkStats is a snapshot of one log consumer's counters (the store or
// index role). Its fields match worker.Stats: metrics.SinkStats(s.Stats()).
type SinkStats struct {
	Batches           int64 // batches written
	Messages          int64 // messages written
	Errors            int64 // failed writes (each retry counts)
	LastBatchSize     int64
	LastBatchDuration time.Duration // of the last successful write
}

// Sink exports the counters of the log consumer name ("store", "index"),
// labelled sink=name, read from stats at each scrape. Call it once per name.
func (m *Metrics) Sink(name string, stats func() SinkStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(newSnapshot(stats, prometheus.Labels{"sink": name},
		counter("sink_batches_total", "Batches written to the sink's backend and committed.", func(s SinkStats) int64 { return s.Batches }),
		counter("sink_messages_total", "Messages written to the sink's backend and committed.", func(s SinkStats) int64 { return s.Messages }),
		counter("sink_errors_total", "Failed batch writes (each is retried).", func(s SinkStats) int64 { return s.Errors }),
		gauge("sink_last_batch_size", "Messages in the last batch written.", func(s SinkStats) int64 { return s.LastBatchSize }),
		seconds("sink_last_batch_seconds", "Time the last successful batch write took.", func(s SinkStats) time.Duration { return s.LastBatchDuration }),
	))
}

// LogLag exports chatd_log_lag{group}: the log entries the consumer group
// has not committed (JetStream: an entry holds one message or more; Kafka:
// one each), polled from lag at each scrape with LagTimeout. A failed
// poll leaves the sample out and counts chatd_log_lag_errors_total{group}.
// Call it once per group.
func (m *Metrics) LogLag(group string, lag func(ctx context.Context) (int64, error)) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"group": group}
	m.reg.MustRegister(&lagCollector{
		lag: lag,
		lagDesc: prometheus.NewDesc(namespace+"_log_lag", "Log entries the consumer group has not committed (JetStream: an entry holds one message or more; Kafka: one).",
			nil, labels),
		errDesc: prometheus.NewDesc(namespace+"_log_lag_errors_total", "Failed polls of the consumer group's lag.",
			nil, labels),
	})
}

type lagCollector struct {
	lag     func(ctx context.Context) (int64, error)
	lagDesc *prometheus.Desc
	errDesc *prometheus.Desc
	errors  atomic.Int64
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagDesc
	ch <- c.errDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), LagTimeout)
	defer cancel()
	if n, err := c.lag(ctx); err != nil {
		c.errors.Add(1)
	} else {
		ch <- prometheus.MustNewConstMetric(c.lagDesc, prometheus.GaugeValue, float64(n))
	}
	ch <- prometheus.MustNewConstMetric(c.errDesc, prometheus.CounterValue, float64(c.errors.Load()))
}

// snapshot is a Collector that takes one snapshot of a component's counters
// per scrape and turns its fields into metrics, so the values of one scrape
// are consistent with each other and the component is asked once.
type snapshot[S any] struct {
	stats  func() S
	fields []field[S]
	descs  []*prometheus.Desc
}

type field[S any] struct {
	name, help string
	kind       prometheus.ValueType
	get        func(S) float64
}

func counter[S any](name, help string, get func(S) int64) field[S] {
	return field[S]{name, help, prometheus.CounterValue, func(s S) float64 { return float64(get(s)) }}
}

func gauge[S any](name, help string, get func(S) int64) field[S] {
	return field[S]{name, help, prometheus.GaugeValue, func(s S) float64 { return float64(get(s)) }}
}

func seconds[S any](name, help string, get func(S) time.Duration) field[S] {
	return field[S]{name, help, prometheus.GaugeValue, func(s S) float64 { return get(s).Seconds() }}
}

func secondsTotal[S any](name, help string, get func(S) time.Duration) field[S] {
	return field[S]{name, help, prometheus.CounterValue, func(s S) float64 { return get(s).Seconds() }}
}

func newSnapshot[S any](stats func() S, labels prometheus.Labels, fields ...field[S]) *snapshot[S] {
	c := &snapshot[S]{stats: stats, fields: fields}
	for _, f := range fields {
		c.descs = append(c.descs, prometheus.NewDesc(namespace+"_"+f.name, f.help, nil, labels))
	}
	return c
}

func (c *snapshot[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *snapshot[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for i, f := range c.fields {
		ch <- prometheus.MustNewConstMetric(c.descs[i], f.kind, f.get(s))
	}
}
