// Package worker runs the log's consumers: the store role (group "store",
// writing MessageStore.WriteMessages) and the index role (group "index",
// writing SearchIndex.IndexMessages).
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/prio"
)

// Stats are a sink's counters, for metrics.
type Stats struct {
	Batches           int64 // batches written
	Messages          int64 // messages written
	Errors            int64 // failed writes (each retry counts)
	LastBatchSize     int64
	LastBatchDuration time.Duration // of the last successful write
}

// Sink consumes one group of the log and writes each batch with write,
// retrying until it succeeds: a write that fails must not let the log
// commit, or the messages would be skipped for good (the seed's auto-commit
// did exactly that).
type Sink struct {
	// RetryMin and RetryMax bound the exponential backoff between write
	// attempts. Set before Run; defaults 100 ms and 30 s.
	RetryMin, RetryMax time.Duration

	name, group string
	log         chat.Log
	write       func(context.Context, []chat.Message) error
	logger      *slog.Logger

	batches, messages, errors atomic.Int64
	lastSize, lastDur         atomic.Int64
	// writing is the creation time (Unix ns) of the oldest message of the
	// batch being written, 0 between batches; failing is set while a
	// write is being retried. Behind reads both from other goroutines.
	writing atomic.Int64
	failing atomic.Bool

	// background runs writes on the writer goroutine, whose thread has
	// the background priority; nil when the priority could not be
	// lowered (set by Run, read by handle on the same goroutine).
	background func(context.Context, []chat.Message) error
}

// catchUpAge is how old a batch's oldest message may be before the sink
// writes it at normal priority: the background priority is for a sink that
// keeps up, and must not let one fall ever further behind under a load
// that keeps the CPU busy.
const catchUpAge = 500 * time.Millisecond

// NewSink returns a sink named name (for logs) consuming group.
func NewSink(name, group string, log chat.Log, write func(context.Context, []chat.Message) error, logger *slog.Logger) *Sink {
	return &Sink{
		RetryMin: 100 * time.Millisecond, RetryMax: 30 * time.Second,
		name: name, group: group, log: log, write: write,
		logger: logger.With("role", name, "group", group),
	}
}

// Run consumes until ctx ends. The batch writes run as background work
// (prio.Background): nobody waits on a batch, so the sink yields the CPU to
// live traffic. Only the writes: fetching and acking log entries go through
// the NATS connection that ingest publishes on, and a lowered thread that
// the kernel preempts while it holds that connection's lock would hold
// every send back with it (with nice 19 the durable benchmark's ack p99
// went from 8-11 ms to 130-470 ms).
func (s *Sink) Run(ctx context.Context) error {
	jobs := make(chan writeJob)
	lowered := make(chan bool)
	go s.writer(jobs, lowered)
	defer close(jobs)
	if <-lowered {
		s.background = func(ctx context.Context, msgs []chat.Message) error {
			done := make(chan error, 1)
			jobs <- writeJob{ctx, msgs, done}
			return <-done
		}
	}
	s.logger.Info("sink started", "lowered_priority", s.background != nil)
	if err := s.log.Consume(ctx, s.group, s.handle); err != nil {
		return fmt.Errorf("consume %s: %w", s.group, err)
	}
	return nil
}

type writeJob struct {
	ctx  context.Context
	msgs []chat.Message
	done chan<- error
}

// writer runs the writes handed to it on a thread of background priority,
// until jobs is closed. It reports on lowered whether the priority was
// lowered, and then ends if it was not.
func (s *Sink) writer(jobs <-chan writeJob, lowered chan<- bool) {
	ok := prio.Background()
	lowered <- ok
	if !ok {
		return
	}
	for j := range jobs {
		j.done <- s.write(j.ctx, j.msgs)
	}
}

// Lag returns how many logged messages this sink has not written yet.
func (s *Sink) Lag(ctx context.Context) (int64, error) { return s.log.Lag(ctx, s.group) }

// Behind returns how long before now the oldest message of the batch being
// written was sent: how far the sink is behind the log, 0 when it waits for
// more. A sink whose writes fail reports 0, so a broken store or index never
// holds live traffic back (see ingest.Config.MaxBacklog); its lag shows in
// chatd_log_lag and its errors in chatd_sink_errors_total.
func (s *Sink) Behind(now time.Time) time.Duration {
	oldest := s.writing.Load()
	if oldest == 0 || s.failing.Load() {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, oldest)))
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Messages: s.messages.Load(), Errors: s.errors.Load(),
		LastBatchSize: s.lastSize.Load(), LastBatchDuration: time.Duration(s.lastDur.Load()),
	}
}

// handle writes one batch, retrying with capped exponential backoff. It
// retries itself rather than returning the error to the log, so the backoff
// and its logging are the same whichever log runs underneath; it returns an
// error only when ctx ends, leaving the batch uncommitted.
func (s *Sink) handle(ctx context.Context, msgs []chat.Message) error {
	backoff := s.RetryMin
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	maxBackoff := max(s.RetryMax, backoff)
	// A sink that fell behind (its oldest message more than catchUpAge
	// old) writes at normal priority, here.
	oldest := oldestSent(msgs)
	write := s.write
	if s.background != nil && (len(msgs) == 0 || time.Since(oldest) <= catchUpAge) {
		write = s.background
	}
	if !oldest.IsZero() {
		s.writing.Store(oldest.UnixNano())
	}
	defer s.writing.Store(0)
	defer s.failing.Store(false)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := write(ctx, msgs)
		if err == nil {
			s.batches.Add(1)
			s.messages.Add(int64(len(msgs)))
			s.lastSize.Store(int64(len(msgs)))
			s.lastDur.Store(int64(time.Since(start)))
			if attempt > 1 {
				s.logger.Info("write recovered", "attempts", attempt, "messages", len(msgs))
			}
			return nil
		}
		s.errors.Add(1)
		s.failing.Store(true)
		if ctx.Err() != nil {
			return fmt.Errorf("write: %w", err)
		}
		// One line per attempt: with the backoff doubling up to its cap,
		// a long outage logs at most once per RetryMax.
		s.logger.Warn("write failed, retrying", "err", err, "attempt", attempt, "messages", len(msgs), "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("write: %w", ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// oldestSent returns the earliest CreatedAt of msgs (zero if there are
// none, or one has no time: such a message counts as old).
func oldestSent(msgs []chat.Message) time.Time {
	if len(msgs) == 0 {
		return time.Time{}
	}
	oldest := msgs[0].CreatedAt
	for _, m := range msgs[1:] {
		if m.CreatedAt.Before(oldest) {
			oldest = m.CreatedAt
		}
	}
	return oldest
}
