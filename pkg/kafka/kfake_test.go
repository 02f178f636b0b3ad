package kafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The tests below run on kfake, franz-go's in-process Kafka, so the unit
// tier needs nothing installed. They do not replace the same checks on a
// real broker in kafka_test.go.

func fakeCluster(tb testing.TB) []string {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		tb.Fatalf("kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c.ListenAddrs()
}

func TestFakeLogConformance(t *testing.T) {
	brokers := fakeCluster(t)
	chattest.Log(t, func(t *testing.T) chat.Log { return openLog(t, brokers, Config{}) })
}

func TestFakeRecordsKeyedByRoom(t *testing.T) {
	testKeyedByRoom(t, openLog(t, fakeCluster(t), Config{}))
}

func TestFakeUndecodableRecordsSkipped(t *testing.T) {
	testUndecodableSkipped(t, openLog(t, fakeCluster(t), Config{Partitions: 1}))
}

// TestFakeRetryBackoffCapped checks the backoff between retries of a failing
// batch doubles and stops at MaxRetryBackoff, and that the batch is never
// committed past while it fails.
func TestFakeRetryBackoffCapped(t *testing.T) {
	l := openLog(t, fakeCluster(t), Config{Partitions: 1, RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 40 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := chattest.LogMessages(t, 3, 1)
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		times []time.Time
	)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.Consume(cctx, "g", func(context.Context, []chat.Message) error {
			mu.Lock()
			defer mu.Unlock()
			times = append(times, time.Now())
			if len(times) == 7 {
				ccancel()
			}
			return context.DeadlineExceeded // any error
		})
	}()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 7 {
		t.Fatalf("handler called %d times, want 7", len(times))
	}
	// Gaps: 10, 20, 40, 40, 40, 40 ms; none may be far above the cap.
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap > time.Second {
			t.Fatalf("retry %d came after %v, backoff not capped", i, gap)
		}
	}
	lag, err := l.Lag(ctx, "g")
	if err != nil || lag != 3 {
		t.Fatalf("Lag after only failures = %d, %v; want 3 (nothing committed)", lag, err)
	}
}
