// Package kafka implements chat.Log on Apache Kafka with franz-go: the
// durable message log between the ingest role and the store and index roles
// in distributed mode.
//
// Records are keyed by room ID, so one room's messages land in one partition
// and keep their order. The producer is idempotent and waits for all in-sync
// replicas, so an appended message survives a broker failure and is never
// written twice by a producer retry. Consumers commit offsets only after their
// handler succeeded, so a failed write downstream is retried, not skipped.
package kafka

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config configures the Kafka log.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the message topic; default "message", the seed's.
	Topic string
	// Partitions is the partition count used when the topic has to be
	// created; default 12. An existing topic is left as it is.
	Partitions int
	// ReplicationFactor is used when the topic has to be created; 0 or -1
	// lets the brokers' default.replication.factor decide.
	ReplicationFactor int
	// ClientID names this process to the brokers; default "chatd".
	ClientID string
	// MaxPollRecords bounds one batch handed to a consumer's handler;
	// default 1000.
	MaxPollRecords int
	// RetryBackoff is the first wait before a failed batch is handed to
	// the handler again; it doubles up to MaxRetryBackoff. Defaults 100ms
	// and 10s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// TLS, if set, dials the brokers over TLS.
	TLS *tls.Config
	// SASL, if set, authenticates every connection (after TLS, if any).
	SASL sasl.Mechanism
}

// connOpts are the client options every client of the log shares: where
// the brokers are and how to reach them.
func (c *Config) connOpts(log *slog.Logger) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.WithLogger(kgoLogger{log}),
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	return opts
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("in kafka.brokers: at least one broker is required")
	}
	if c.Topic == "" {
		c.Topic = "message"
	}
	if c.Partitions == 0 {
		c.Partitions = 12
	}
	if c.Partitions < 0 {
		return errors.New("in kafka.partitions: must be > 0")
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.ClientID == "" {
		c.ClientID = "chatd"
	}
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 1000
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = 10 * time.Second
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		c.MaxRetryBackoff = c.RetryBackoff
	}
	return nil
}

// Log is a chat.Log on one Kafka topic. It is safe for concurrent use.
type Log struct {
	cfg  Config
	log  *slog.Logger
	prod *kgo.Client
	adm  *kadm.Client

	skipped atomic.Int64
}

var _ chat.Log = (*Log)(nil)

// NewLog connects to the brokers and creates the topic if it is missing.
func NewLog(ctx context.Context, cfg Config, log *slog.Logger) (*Log, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("topic", cfg.Topic)
	prod, err := kgo.NewClient(append(cfg.connOpts(log),
		kgo.DefaultProduceTopic(cfg.Topic),
		// acks=all with the default idempotent producer: a message the
		// client was acked for is on every in-sync replica, and producer
		// retries cannot duplicate or reorder it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	l := &Log{cfg: cfg, log: log, prod: prod, adm: kadm.NewClient(prod)}
	if err := l.ensureTopic(ctx); err != nil {
		prod.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) ensureTopic(ctx context.Context) error {
	_, err := l.adm.CreateTopic(ctx, int32(l.cfg.Partitions), int16(l.cfg.ReplicationFactor), nil, l.cfg.Topic)
	if err == nil {
		l.log.Info("kafka topic created", "partitions", l.cfg.Partitions)
		return nil
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return fmt.Errorf("create kafka topic %q: %w", l.cfg.Topic, err)
}

// Skipped returns how many records the consumers of this Log could not
// decode and skipped.
func (l *Log) Skipped() int64 { return l.skipped.Load() }

// Close flushes anything still buffered and closes the producer.
func (l *Log) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.prod.Flush(ctx)
	l.prod.Close()
	if err != nil {
		return fmt.Errorf("flush kafka producer: %w", err)
	}
	return nil
}

// Append produces msgs and returns once Kafka has acknowledged every one of
// them, so the caller acks its clients only for messages that are durable.
func (l *Log) Append(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		v, err := json.Marshal(msgs[i])
		if err != nil {
			return fmt.Errorf("encode message %s: %w", msgs[i].ID, err)
		}
		recs[i] = &kgo.Record{Key: []byte(msgs[i].RoomID.String()), Value: v}
	}
	if err := l.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return fmt.Errorf("produce to kafka: %w", err)
		}
		// Anything else means the brokers cannot take writes now: the
		// client may retry the same send (its nonce prevents a double).
		return fmt.Errorf("produce to kafka: %w: %w", chat.Errorf(chat.EUNAVAILABLE, "message log unavailable"), err)
	}
	return nil
}

// groupID scopes a consumer group to the topic, so two deployments that
// share a Kafka cluster (with different topics) never share a group, and
// one's rebalance cannot stall the other.
func (l *Log) groupID(group string) string { return "chatd." + l.cfg.Topic + "." + group }

// Consume runs a member of consumer group group until ctx ends.
//
// Each poll (up to MaxPollRecords records across this member's partitions)
// becomes one handler batch; its offsets are committed only after handle
// returned nil. On error the same batch is handed over again after a capped
// exponential backoff, without polling further, so nothing is skipped.
// Rebalances are held off while a batch is being handled
// (BlockRebalanceOnPoll), so a partition never moves to another member with
// handled-but-uncommitted records behind it.
func (l *Log) Consume(ctx context.Context, group string, handle func(context.Context, []chat.Message) error) error {
	if group == "" {
		return errors.New("kafka consume: empty group")
	}
	group = l.groupID(group)
	log := l.log.With("group", group)
	// pending holds, per partition, the last record handled but not yet
	// committed (a commit failed), so the revoke callback can commit it
	// before the partition moves on.
	var (
		mu      sync.Mutex
		pending = map[int32]*kgo.Record{}
	)
	commitPending := func(ctx context.Context, cl *kgo.Client) {
		mu.Lock()
		recs := make([]*kgo.Record, 0, len(pending))
		for _, r := range pending {
			recs = append(recs, r)
		}
		mu.Unlock()
		if len(recs) == 0 {
			return
		}
		if err := cl.CommitRecords(ctx, recs...); err != nil {
			log.Warn("kafka commit on revoke failed; records will be redelivered", "err", err)
		}
		mu.Lock()
		clear(pending)
		mu.Unlock()
	}
	cl, err := kgo.NewClient(append(l.cfg.connOpts(log),
		kgo.ConsumerGroup(group),
		// A member that dies (kill -9, lost host) holds its partitions
		// until its session times out; franz-go's 45 s default stalled a
		// restarted store role that long. Brokers accept down to 6 s.
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.ConsumeTopics(l.cfg.Topic),
		// A new group starts at the beginning: every appended message
		// reaches every group, even one created later.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			commitPending(ctx, cl)
		}),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) {
			// The group moved on without us: a commit would be refused,
			// and the new owner starts from the last commit.
			mu.Lock()
			clear(pending)
			mu.Unlock()
		}),
	)...)
	if err != nil {
		return fmt.Errorf("kafka consumer client: %w", err)
	}
	defer cl.CloseAllowingRebalance()

	for {
		fs := cl.PollRecords(ctx, l.cfg.MaxPollRecords)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("kafka fetch error", "partition", p, "err", err)
			}
		})
		recs := fs.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		msgs := l.decode(log, recs)
		if len(msgs) > 0 && !l.handleRetrying(ctx, log, msgs, handle) {
			return nil // ctx ended: the uncommitted batch is redelivered
		}
		// Commit even when ctx has just ended: the batch was handled.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := cl.CommitRecords(cctx, recs...); err != nil {
			log.Warn("kafka commit failed; will retry with the next batch", "err", err)
			mu.Lock()
			for _, r := range recs {
				if p, ok := pending[r.Partition]; !ok || p.Offset < r.Offset {
					pending[r.Partition] = r
				}
			}
			mu.Unlock()
		} else {
			mu.Lock()
			for _, r := range recs {
				if p, ok := pending[r.Partition]; ok && p.Offset <= r.Offset {
					delete(pending, r.Partition)
				}
			}
			mu.Unlock()
		}
		cancel()
		cl.AllowRebalance()
	}
}

// decode turns records into messages. A record that is not a message is
// logged and skipped: one bad record must never stop consumption.
func (l *Log) decode(log *slog.Logger, recs []*kgo.Record) []chat.Message {
	msgs := make([]chat.Message, 0, len(recs))
	for _, r := range recs {
		var m chat.Message
		if err := json.Unmarshal(r.Value, &m); err != nil || m.ID == 0 || m.RoomID == 0 {
			if err == nil {
				err = errors.New("missing id or room_id")
			}
			l.skipped.Add(1)
			log.Error("skipping undecodable kafka record", "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// handleRetrying calls handle until it succeeds (true) or ctx ends (false).
func (l *Log) handleRetrying(ctx context.Context, log *slog.Logger, msgs []chat.Message, handle func(context.Context, []chat.Message) error) bool {
	wait := l.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		err := handle(ctx, msgs)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("message handler failed; retrying the batch", "attempt", attempt, "messages", len(msgs), "backoff", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(wait*2, l.cfg.MaxRetryBackoff)
	}
}

// Lag returns, summed over the topic's partitions, how many records lie
// past the group's committed offset. A group that has committed nothing on a
// partition lags by the whole retained partition, since it starts there.
func (l *Log) Lag(ctx context.Context, group string) (int64, error) {
	ends, err := l.adm.ListEndOffsets(ctx, l.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("kafka end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("kafka end offsets: %w", err)
	}
	starts, err := l.adm.ListStartOffsets(ctx, l.cfg.Topic)
	if err != nil {
		return 0, fmt.Errorf("kafka start offsets: %w", err)
	}
	if err := starts.Error(); err != nil {
		return 0, fmt.Errorf("kafka start offsets: %w", err)
	}
	group = l.groupID(group)
	committed, err := l.adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return 0, fmt.Errorf("kafka group %q offsets: %w", group, err)
	}
	var lag int64
	ends.Each(func(e kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok && s.Offset > 0 {
			from = s.Offset
		}
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil && c.At > from {
			from = c.At
		}
		if e.Offset > from {
			lag += e.Offset - from
		}
	})
	return lag, nil
}

// Mechanism returns the SASL mechanism named as in kafka.sasl.mechanism:
// plain, scram-sha-256 or scram-sha-512; nil for "".
func Mechanism(name, user, pass string) (sasl.Mechanism, error) {
	switch name {
	case "":
		return nil, nil
	case "plain":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q (want plain, scram-sha-256 or scram-sha-512)", name)
}
