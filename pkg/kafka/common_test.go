package kafka

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Checks shared by the real-Kafka and the in-process (kfake) tests.

func testKeyedByRoom(t *testing.T, l *Log) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs := chattest.LogMessages(t, 200, 7)
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.cfg.Brokers...), kgo.ConsumeTopics(l.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	partOf := map[chat.ID]int32{}
	n := 0
	for n < len(msgs) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("got %d of %d records: %v", n, len(msgs), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			id, err := strconv.ParseInt(string(r.Key), 10, 64)
			if err != nil {
				t.Fatalf("record key %q is not a room ID", r.Key)
			}
			if p, ok := partOf[chat.ID(id)]; ok && p != r.Partition {
				t.Fatalf("room %d in partitions %d and %d", id, p, r.Partition)
			}
			partOf[chat.ID(id)] = r.Partition
		})
	}
	if len(partOf) != 7 {
		t.Fatalf("saw %d rooms, want 7", len(partOf))
	}
}

func testUndecodableSkipped(t *testing.T, l *Log) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs := chattest.LogMessages(t, 4, 1)
	if err := l.Append(ctx, msgs[:2]); err != nil {
		t.Fatal(err)
	}
	bad := []*kgo.Record{
		{Topic: l.cfg.Topic, Key: []byte("1000"), Value: []byte("not json")},
		{Topic: l.cfg.Topic, Key: []byte("1000"), Value: []byte(`{"type":"room_event"}`)},
	}
	if err := l.prod.ProduceSync(ctx, bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, msgs[2:]); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []chat.Message
	)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(cctx, "g", func(_ context.Context, b []chat.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, b...)
			return nil
		})
	}()
	for {
		lag, err := l.Lag(ctx, "g")
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if err == nil && lag == 0 && n == len(msgs) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d messages, lag %d (%v)", n, len(msgs), lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ccancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	for i := range msgs {
		if got[i].ID != msgs[i].ID {
			t.Fatalf("message %d is %d, want %d", i, got[i].ID, msgs[i].ID)
		}
	}
	if s := l.Skipped(); s != 2 {
		t.Fatalf("Skipped() = %d, want 2", s)
	}
}
