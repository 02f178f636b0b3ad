// Package jetstream implements chat.Log on NATS JetStream: the embedded
// default durable message log between ingest and the store and index roles.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatd/chatd/pkg/chat"
)

// LogConfig configures the stream and its consumers. Zero values take the
// defaults given per field.
type LogConfig struct {
	// Stream is the stream name. Default "CHATD_LOG".
	Stream string
	// SubjectPrefix: an entry whose messages are all in room R is stored
	// on <prefix>.<R>, an entry of several rooms on <prefix>.rooms.
	// Default "chatd.log".
	SubjectPrefix string
	// EntryMessages is the most messages one stream entry holds (see
	// AppendAsync). Default 64.
	EntryMessages int
	// MaxAge drops messages older than this, consumed or not. Default 7 days.
	MaxAge time.Duration
	// MaxBytes bounds the stream size, dropping the oldest messages. Default
	// unlimited (0 or negative).
	MaxBytes int64
	// Replicas is the stream replication factor in a NATS cluster. Default 1.
	Replicas int
	// Duplicates is the window in which a re-published message ID is not
	// stored again, covering a retried Append. Default 2 minutes.
	Duplicates time.Duration
	// AppendTimeout bounds the wait for the PubAcks of one Append when the
	// caller's context has no earlier deadline. Default 10 s.
	AppendTimeout time.Duration
	// FetchBatch and FetchWait bound one pull: up to FetchBatch entries,
	// waiting at most FetchWait for a partial batch. Defaults 500, 100 ms.
	FetchBatch int
	FetchWait  time.Duration
	// IdleWait is how long one pull waits for the next entry after a pull
	// found none: an idle consumer makes one pull per IdleWait instead of
	// one per FetchWait, and takes an entry as soon as it is appended.
	// Default 30 s; the server heartbeats such a pull, so a lost one is
	// noticed within 2×idleHeartbeat.
	IdleWait time.Duration
	// AckWait is how long the server waits for a delivered batch's ack before
	// handing it to another consumer. Consume keeps it alive with
	// in-progress signals while handling. Default 30 s.
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged entries per group. Default 10000.
	MaxAckPending int
	// RetryMin and RetryMax bound the exponential backoff between attempts
	// to handle a failed batch. Defaults 100 ms, 30 s.
	RetryMin, RetryMax time.Duration
}

func (c *LogConfig) setDefaults() {
	if c.Stream == "" {
		c.Stream = "CHATD_LOG"
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "chatd.log"
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = -1
	}
	if c.EntryMessages <= 0 {
		c.EntryMessages = 64
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.AppendTimeout <= 0 {
		c.AppendTimeout = 10 * time.Second
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = 500
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 100 * time.Millisecond
	}
	if c.IdleWait <= 0 {
		c.IdleWait = 30 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 10000
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(30*time.Second, c.RetryMin)
	}
}

// Stats are counters for metrics.
type Stats struct {
	Appended     int64 // messages acknowledged by the stream
	Entries      int64 // stream entries acknowledged (each holds up to EntryMessages messages)
	AppendErrors int64 // failed Append calls
	Duplicates   int64 // messages in entries the stream recognised as already stored
	Delivered    int64 // messages handed to handlers (retries included)
	Committed    int64 // messages acked after a successful handle
	HandleErrors int64 // failed handle calls
	DecodeErrors int64 // undecodable log entries or lines of one, skipped
}

// Log is a chat.Log on a JetStream stream.
type Log struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    LogConfig
	log    *slog.Logger

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer

	appended, entries, appendErrors    atomic.Int64
	duplicates                         atomic.Int64
	delivered, committed, handleErrors atomic.Int64
	decodeErrors                       atomic.Int64
}

var _ chat.Log = (*Log)(nil)

// NewLog creates or updates the stream and returns the log. In a cluster
// that is still electing its JetStream leader it retries until ctx ends.
func NewLog(ctx context.Context, nc *nats.Conn, cfg LogConfig, log *slog.Logger) (*Log, error) {
	cfg.setDefaults()
	l := &Log{nc: nc, cfg: cfg, log: log.With("component", "jetstream", "stream", cfg.Stream), consumers: map[string]jetstream.Consumer{}}
	js, err := jetstream.New(nc,
		// Without a timeout a PubAck lost in a disconnect would hold its
		// slot in the async window forever.
		jetstream.WithPublishAsyncTimeout(cfg.AppendTimeout),
		jetstream.WithPublishAsyncMaxPending(16384),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	l.js = js
	scfg := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "chatd message log",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		// Limits retention: the store and index groups consume
		// independently, so a message must outlive the first consumer.
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     cfg.MaxAge,
		MaxBytes:   cfg.MaxBytes,
		Discard:    jetstream.DiscardOld,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.Duplicates,
	}
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l.stream, err = js.CreateOrUpdateStream(actx, scfg)
		cancel()
		if err == nil {
			return l, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
		}
		l.log.Warn("jetstream not ready, retrying", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// retryable reports errors that a forming cluster or a reconnect resolves.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// StreamName returns the name of the stream.
func (l *Log) StreamName() string { return l.cfg.Stream }

// Stats returns the counters.
func (l *Log) Stats() Stats {
	return Stats{
		Appended: l.appended.Load(), Entries: l.entries.Load(), AppendErrors: l.appendErrors.Load(), Duplicates: l.duplicates.Load(),
		Delivered: l.delivered.Load(), Committed: l.committed.Load(), HandleErrors: l.handleErrors.Load(),
		DecodeErrors: l.decodeErrors.Load(),
	}
}

// Append appends msgs and waits until the stream has stored all of them
// (AppendAsync).
func (l *Log) Append(ctx context.Context, msgs []chat.Message) error {
	return l.AppendAsync(ctx, msgs)()
}

// maxEntryBytes bounds one stream entry, well under NATS's default 1 MB
// payload limit; one message always fits (4,000 characters escaped).
const maxEntryBytes = 256 << 10

// AppendAsync publishes msgs asynchronously and returns at once with a
// function that waits for their PubAcks. Calls from one goroutine reach the
// stream in call order, so a caller can start the next batch while this one
// is being made durable. wait must be called once; ctx (bounded by
// AppendTimeout) bounds it.
//
// Consecutive messages share a stream entry, up to EntryMessages of them
// and maxEntryBytes: their JSON objects one per line. Every message costs
// the stream a store, a PubAck, and a delivery and an ack per consumer
// group; an entry costs that once for all its messages, which is most of
// the log's cost per message when ingest batches under load. An entry's
// Nats-Msg-Id is its first message's ID and its count, so an Append
// retried within the Duplicates window does not store it twice; a message
// that lands twice in different entries is deduplicated by its ID in every
// store and index, as a redelivered one is.
func (l *Log) AppendAsync(ctx context.Context, msgs []chat.Message) (wait func() error) {
	if len(msgs) == 0 {
		return func() error { return nil }
	}
	ctx, cancel := chat.Bound(ctx, l.cfg.AppendTimeout)
	futures := make([]jetstream.PubAckFuture, 0, len(msgs)/l.cfg.EntryMessages+1)
	counts := make([]int, 0, cap(futures))
	var err error
	for rest := msgs; len(rest) > 0; {
		data, n := l.entry(rest)
		entry := rest[:n]
		rest = rest[n:]
		id := entry[0].ID.String()
		if n > 1 {
			id += "+" + strconv.Itoa(n)
		}
		m := &nats.Msg{Subject: l.entrySubject(entry), Data: data, Header: nats.Header{}}
		var f jetstream.PubAckFuture
		f, err = l.js.PublishMsgAsync(m,
			jetstream.WithMsgID(id),
			jetstream.WithExpectStream(l.cfg.Stream),
			// A batch larger than the async window waits for acks to
			// free slots instead of failing after the 200 ms default.
			jetstream.WithStallWait(l.cfg.AppendTimeout))
		if err != nil {
			err = fmt.Errorf("publish: %w", err)
			break
		}
		futures = append(futures, f)
		counts = append(counts, n)
	}
	return func() error {
		defer cancel()
		// Wait for every future even after a failure, so none is left
		// behind to be confused with a later Append's.
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				l.appended.Add(int64(counts[i]))
				l.entries.Add(1)
				if ack.Duplicate {
					l.duplicates.Add(int64(counts[i]))
				}
			case e := <-f.Err():
				if err == nil {
					err = fmt.Errorf("pub ack: %w", e)
				}
			case <-ctx.Done():
				if err == nil {
					err = fmt.Errorf("pub ack: %w", ctx.Err())
				}
			}
		}
		if err != nil {
			l.appendErrors.Add(1)
			return fmt.Errorf("append: %w", err)
		}
		return nil
	}
}

// entry encodes the first messages of msgs as one stream entry and returns
// it and how many it holds: at least one, at most EntryMessages, and no
// more than maxEntryBytes unless the first alone is larger.
func (l *Log) entry(msgs []chat.Message) ([]byte, int) {
	data := msgs[0].JSON()
	n := 1
	for n < len(msgs) && n < l.cfg.EntryMessages {
		before := len(data)
		data = msgs[n].AppendJSON(append(data, '\n'))
		if len(data) > maxEntryBytes {
			data = data[:before]
			break
		}
		n++
	}
	return data, n
}

// entrySubject is <prefix>.<room> for an entry of one room's messages and
// <prefix>.rooms for one of several rooms.
func (l *Log) entrySubject(msgs []chat.Message) string {
	for _, m := range msgs[1:] {
		if m.RoomID != msgs[0].RoomID {
			return l.cfg.SubjectPrefix + ".rooms"
		}
	}
	return l.subject(msgs[0].RoomID)
}

func (l *Log) subject(room chat.ID) string { return l.cfg.SubjectPrefix + "." + room.String() }

// Group names become durable consumer names, which NATS restricts.
var groupRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (l *Log) consumer(ctx context.Context, group string) (jetstream.Consumer, error) {
	if !groupRE.MatchString(group) {
		return nil, chat.Errorf(chat.EINVALID, "invalid consumer group %q", group)
	}
	l.mu.Lock()
	c := l.consumers[group]
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := l.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       group,
		Description:   "chatd consumer group " + group,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Explicit acks, not AckAll: consumers of one group share the
		// durable, and AckAll by one would commit another's unfinished
		// messages.
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       l.cfg.AckWait,
		MaxDeliver:    -1, // never give up on a message
		MaxAckPending: l.cfg.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", group, err)
	}
	l.mu.Lock()
	l.consumers[group] = c
	l.mu.Unlock()
	return c, nil
}

// Consume pulls batches for group and hands them to handle until ctx ends.
//
// A failed batch is kept and handed to handle again after an exponential
// backoff, instead of being Nak'ed back to the server: a Nak would let the
// next fetch overtake it and break the order within a room. While a batch
// is held its messages are kept in progress, so the server does not
// redeliver them elsewhere; if ctx ends first they are Nak'ed, so another
// consumer of the group takes them over at once.
func (l *Log) Consume(ctx context.Context, group string, handle func(context.Context, []chat.Message) error) error {
	log := l.log.With("group", group)
	var c jetstream.Consumer
	backoff := l.cfg.RetryMin
	for {
		var err error
		c, err = l.consumer(ctx, group)
		if err == nil {
			break
		}
		if chat.ErrorCode(err) == chat.EINVALID {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("consumer not ready, retrying", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, l.cfg.RetryMax)
	}
	backoff = l.cfg.RetryMin
	idle := false
	for ctx.Err() == nil {
		raw, err := l.fetch(ctx, c, idle)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("fetch failed", "err", err, "backoff", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, l.cfg.RetryMax)
			// The durable may be gone (deleted by an operator, lost with
			// a stream restore: a fetch then finds no responders).
			// Creating it again is a no-op if it exists; if not, it starts
			// from the stream's beginning, since redelivery is harmless
			// and a skipped message is not.
			l.mu.Lock()
			delete(l.consumers, group)
			l.mu.Unlock()
			if nc, cerr := l.consumer(ctx, group); cerr == nil {
				c = nc
			}
			continue
		}
		backoff = l.cfg.RetryMin
		idle = len(raw) == 0
		if idle {
			continue
		}
		l.process(ctx, log, raw, handle)
	}
	return nil
}

// idleHeartbeat is how often the server signals a waiting idle pull.
const idleHeartbeat = 5 * time.Second

// fetch pulls the next batch: up to FetchBatch entries, waiting at most
// FetchWait for a partial batch. When idle (the last pull found nothing)
// it first waits, up to IdleWait, for one entry, and then gathers the
// batch's rest as usual; so an idle consumer does not poll, and a busy one
// still writes batches of FetchWait's worth. With no entry by IdleWait it
// returns none and no error; it returns at once when ctx ends.
func (l *Log) fetch(ctx context.Context, c jetstream.Consumer, idle bool) ([]jetstream.Msg, error) {
	raw := make([]jetstream.Msg, 0, l.cfg.FetchBatch)
	drain := func(b jetstream.MessageBatch) error {
		for m := range b.Messages() {
			raw = append(raw, m)
		}
		if len(raw) == 0 {
			return b.Error()
		}
		return nil
	}
	if idle {
		wctx, cancel := context.WithTimeout(ctx, l.cfg.IdleWait)
		defer cancel()
		opts := []jetstream.FetchOpt{jetstream.FetchContext(wctx)}
		if l.cfg.IdleWait >= 2*idleHeartbeat {
			opts = append(opts, jetstream.FetchHeartbeat(idleHeartbeat))
		}
		b, err := c.Fetch(1, opts...)
		if err != nil {
			return nil, err
		}
		if err := drain(b); err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return nil, nil // idle for IdleWait: pull again
			}
			return nil, err
		}
		if len(raw) == 0 || l.cfg.FetchBatch == 1 {
			return raw, nil
		}
	}
	b, err := c.Fetch(l.cfg.FetchBatch-len(raw), jetstream.FetchMaxWait(l.cfg.FetchWait))
	if err == nil {
		err = drain(b)
	}
	if err != nil && len(raw) > 0 {
		// The entry the idle pull took is delivered: hand it on, and let
		// the next pull report the error if it lasts.
		return raw, nil
	}
	return raw, err
}

// process decodes and handles one fetched batch until it succeeds or ctx
// ends.
func (l *Log) process(ctx context.Context, log *slog.Logger, raw []jetstream.Msg, handle func(context.Context, []chat.Message) error) {
	msgs := make([]chat.Message, 0, len(raw))
	kept := raw[:0]
	for _, m := range raw {
		before := len(msgs)
		var bad int
		var err error
		msgs, bad, err = appendEntry(msgs, m.Data())
		if bad == 0 {
			kept = append(kept, m)
			continue
		}
		// One bad entry must not stop persistence for everyone
		// (LESSONS.md): log it, keep what of it decodes, and take the
		// rest out of the stream's way.
		l.decodeErrors.Add(int64(bad))
		seq := uint64(0)
		if md, mdErr := m.Metadata(); mdErr == nil {
			seq = md.Sequence.Stream
		}
		if len(msgs) > before {
			log.Error("undecodable lines in a log entry skipped", "subject", m.Subject(), "stream_seq", seq, "lines", bad, "err", err)
			kept = append(kept, m)
			continue
		}
		log.Error("undecodable log entry terminated", "subject", m.Subject(), "stream_seq", seq, "err", err)
		if err := m.TermWithReason("undecodable"); err != nil {
			log.Warn("term failed", "err", err)
		}
	}
	if len(kept) == 0 {
		return
	}
	stop := l.keepInProgress(kept)
	defer stop()
	backoff := l.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			l.nak(log, kept)
			return
		}
		l.delivered.Add(int64(len(msgs)))
		err := handle(ctx, msgs)
		if err == nil {
			break
		}
		l.handleErrors.Add(1)
		if ctx.Err() != nil {
			l.nak(log, kept)
			return
		}
		log.Warn("handle failed, retrying batch", "err", err, "attempt", attempt, "messages", len(msgs), "backoff", backoff)
		if !sleep(ctx, backoff) {
			l.nak(log, kept)
			return
		}
		backoff = min(2*backoff, l.cfg.RetryMax)
	}
	for _, m := range kept[:len(kept)-1] {
		if err := m.Ack(); err != nil {
			// The server redelivers after AckWait; handlers are
			// idempotent, so this costs a rewrite, not a message.
			log.Warn("ack failed", "err", err)
		}
	}
	// Acking the last one synchronously means the server has processed
	// the whole batch's acks (it takes a consumer's acks in order), so the
	// batch is committed before the next fetch or a return: a consumer that
	// stops now resumes right after it, and Lag no longer counts it.
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := kept[len(kept)-1].DoubleAck(actx); err != nil {
		log.Warn("ack failed", "err", err)
	}
	cancel()
	l.committed.Add(int64(len(msgs)))
}

// keepInProgress tells the server every AckWait/3 that msgs are still being
// worked on, so a slow write or a long backoff does not get them redelivered
// to another consumer.
func (l *Log) keepInProgress(msgs []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(l.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress() // best effort; AckWait redelivery is the fallback
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// nak hands msgs back for redelivery and returns once the server has
// processed the naks. Acks are queued on the server apart from pull
// requests, so without waiting, a consumer started next could be served
// later messages before these, breaking room order across the handover.
func (l *Log) nak(log *slog.Logger, msgs []jetstream.Msg) {
	for _, m := range msgs[:len(msgs)-1] {
		if err := m.Nak(); err != nil {
			log.Warn("nak failed", "err", err)
			return
		}
	}
	// The server answers an ack sent as a request once it has processed it,
	// and processes a consumer's acks in order: the reply to the last nak
	// covers all of them.
	last := msgs[len(msgs)-1]
	if _, err := l.nc.Request(last.Reply(), []byte("-NAK"), 5*time.Second); err != nil {
		log.Warn("nak failed", "err", err)
	}
}

// Lag returns the entries the group has not committed: pending plus
// delivered-but-unacked. A group that never consumed lags by the whole
// stream. An entry holds one message or more.
func (l *Log) Lag(ctx context.Context, group string) (int64, error) {
	if !groupRE.MatchString(group) {
		return 0, chat.Errorf(chat.EINVALID, "invalid consumer group %q", group)
	}
	c, err := l.stream.Consumer(ctx, group)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		info, err := l.stream.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("stream info: %w", err)
		}
		return int64(info.State.Msgs), nil
	}
	if err != nil {
		return 0, fmt.Errorf("consumer %s: %w", group, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer info %s: %w", group, err)
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
