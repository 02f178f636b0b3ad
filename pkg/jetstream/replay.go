package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatd/chatd/pkg/chat"
)

// replayBatch is how many log entries Replay fetches and hands over at
// once (each holds one message or more): 5,000 replays 200,000 entries about 20% faster than 500 (9.3
// against 11.6 µs an entry on 2 cores), for about 1.5 MB of batch.
const replayBatch = 5000

// Replay reads every message appended at or after since, up to the end of
// the log when it is called, in log order, and hands them to handle in
// batches. It uses an ephemeral ordered consumer, so it moves no consumer
// group. Entries that do not decode are skipped (Consume terminates them).
// handle must not keep the slice it is given.
//
// It is how an embedded cache, which lives in memory, gets back what it
// knew before a restart: the nonces of recent sends and the rooms' recent
// windows are both in the log's tail.
func (l *Log) Replay(ctx context.Context, since time.Time, handle func([]chat.Message) error) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("replay: stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	c, err := l.js.OrderedConsumer(ctx, l.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
	})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	msgs := make([]chat.Message, 0, replayBatch)
	// next is the stream sequence after the last entry read (0 before the
	// first). Each fetch asks for no more entries than are left up to
	// last: a fetch asking for more waits out its whole MaxWait, which
	// made every replay of a short log take a second (a restart of a
	// small server, every read of the log in the tests).
	var next uint64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		n := 1 // the first fetch finds where the replay starts
		if next > 0 && next <= last {
			n = int(min(uint64(replayBatch), last-next+1))
		}
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("replay: fetch: %w", err)
		}
		msgs = msgs[:0]
		done, got := false, 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			next = md.Sequence.Stream + 1
			if md.Sequence.Stream > last {
				done = true
				continue // appended after Replay began
			}
			msgs, _, _ = appendEntry(msgs, m.Data())
			if md.Sequence.Stream == last {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("replay: fetch: %w", err)
		}
		if len(msgs) > 0 {
			if err := handle(msgs); err != nil {
				return err
			}
		}
		// An empty fetch means the end: the entries up to last may have
		// aged out (MaxAge) while we read.
		if done || got == 0 {
			return nil
		}
	}
}
