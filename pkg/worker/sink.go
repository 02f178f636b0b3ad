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
}

// NewSink returns a sink named name (for logs) consuming group.
func NewSink(name, group string, log chat.Log, write func(context.Context, []chat.Message) error, logger *slog.Logger) *Sink {
	return &Sink{
		RetryMin: 100 * time.Millisecond, RetryMax: 30 * time.Second,
		name: name, group: group, log: log, write: write,
		logger: logger.With("role", name, "group", group),
	}
}

// Run consumes until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	s.logger.Info("sink started")
	if err := s.log.Consume(ctx, s.group, s.handle); err != nil {
		return fmt.Errorf("consume %s: %w", s.group, err)
	}
	return nil
}

// Lag returns how many logged messages this sink has not written yet.
func (s *Sink) Lag(ctx context.Context) (int64, error) { return s.log.Lag(ctx, s.group) }

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
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := s.write(ctx, msgs)
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
