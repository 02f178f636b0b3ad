package kafka

import (
	"context"
	"strings"
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

// TestFakeTLSAndSASL runs the log against a cluster that takes only TLS
// connections authenticated by SASL, for each mechanism chatd offers.
func TestFakeTLSAndSASL(t *testing.T) {
	certs := chattest.NewCerts(t)
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(certs.ServerTLS), kfake.EnableSASL(),
				kfake.Superuser(strings.ToUpper(mech), "chatd", "s3cret"))
			if err != nil {
				t.Fatalf("kfake: %v", err)
			}
			t.Cleanup(c.Close)
			good, err := Mechanism(mech, "chatd", "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			appendAndConsume(t, openLog(t, c.ListenAddrs(), Config{Partitions: 1, TLS: certs.ClientTLS, SASL: good}))

			// A wrong password, no TLS or no SASL gets an error, not a
			// log (franz-go retries until the context ends).
			wrong, _ := Mechanism(mech, "chatd", "wrong")
			var wg sync.WaitGroup
			for name, cfg := range map[string]Config{
				"wrong password": {TLS: certs.ClientTLS, SASL: wrong},
				"no tls":         {SASL: good},
				"no sasl":        {TLS: certs.ClientTLS},
			} {
				wg.Go(func() {
					cfg.Brokers, cfg.Topic = c.ListenAddrs(), "refused"
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					if l, err := NewLog(ctx, cfg, testLogger(t)); err == nil {
						l.Close()
						t.Errorf("%s: NewLog succeeded", name)
					}
				})
			}
			wg.Wait()
		})
	}
	if _, err := Mechanism("gssapi", "u", "p"); err == nil {
		t.Error("an unknown mechanism was accepted")
	}
}

// appendAndConsume appends a few messages to l and checks a consumer group
// gets them back.
func appendAndConsume(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := chattest.LogMessages(t, 5, 1)
	if err := l.Append(ctx, msgs); err != nil {
		t.Fatalf("append: %v", err)
	}
	got := make(chan []chat.Message, 1)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go func() {
		_ = l.Consume(cctx, "g", func(_ context.Context, b []chat.Message) error {
			select {
			case got <- b:
			default:
			}
			ccancel()
			return nil
		})
	}()
	select {
	case b := <-got:
		if len(b) == 0 || b[0].ID != msgs[0].ID {
			t.Fatalf("consumed %v, want the appended messages from %v", b, msgs[0].ID)
		}
	case <-ctx.Done():
		t.Fatal("nothing consumed")
	}
}
