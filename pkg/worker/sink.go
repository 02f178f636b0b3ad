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

	// lowered: Run's thread has the background priority (set by Run,
	// read by handle on the same goroutine).
	lowered bool
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

// Run consumes until ctx ends. It runs as background work (prio.Background):
// nobody waits on a batch, so the sink yields the CPU to live traffic.
func (s *Sink) Run(ctx context.Context) error {
	s.lowered = prio.Background()
	s.logger.Info("sink started", "lowered_priority", s.lowered)
	if err := s.log.Consume(ctx, s.group, s.handle); err != nil {
		return fmt.Errorf("consume %s: %w", s.group, err)
	}
	return nil
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
	write := s.write
	if s.lowered && behind(msgs, time.Now()) {
		write = atNormalPriority(s.write)
	}
	if oldest := oldestSent(msgs); !oldest.IsZero() {
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

// behind reports whether the oldest of msgs was sent more than catchUpAge
// before now.
func behind(msgs []chat.Message, now time.Time) bool {
	for _, m := range msgs {
		if now.Sub(m.CreatedAt) > catchUpAge {
			return true
		}
	}
	return false
}

// oldestSent returns the earliest CreatedAt of msgs (zero if none).
func oldestSent(msgs []chat.Message) time.Time {
	var oldest time.Time
	for _, m := range msgs {
		if oldest.IsZero() || m.CreatedAt.Before(oldest) {
			oldest = m.CreatedAt
		}
	}
	return oldest
}

// atNormalPriority runs write on a fresh goroutine, which runs on the
// runtime's ordinary threads rather than the sink's lowered one.
func atNormalPriority(write func(context.Context, []chat.Message) error) func(context.Context, []chat.Message) error {
	return func(ctx context.Context, msgs []chat.Message) error {
		done := make(chan error, 1)
		go func() { done <- write(ctx, msgs) }()
		return <-done
	}
}
