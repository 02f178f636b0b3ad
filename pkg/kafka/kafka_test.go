package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
)

// testBrokers returns the brokers of a real Kafka, or skips: this is the
// integration tier, run after scripts/testservers/up.sh.
func testBrokers(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv("CHATD_TEST_KAFKA_BROKERS")
	if v == "" {
		tb.Skip("CHATD_TEST_KAFKA_BROKERS not set")
	}
	return strings.Split(v, ",")
}

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// openLog opens a Log on a fresh topic and deletes the topic at cleanup.
func openLog(tb testing.TB, brokers []string, cfg Config) *Log {
	tb.Helper()
	cfg.Brokers = brokers
	if cfg.Topic == "" {
		cfg.Topic = randomName("chatd-test-")
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 4
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := NewLog(ctx, cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("NewLog: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := l.adm.DeleteTopic(ctx, cfg.Topic); err != nil {
			tb.Logf("delete topic %s: %v", cfg.Topic, err)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

func TestLogConformance(t *testing.T) {
	brokers := testBrokers(t)
	chattest.Log(t, func(t *testing.T) chat.Log { return openLog(t, brokers, Config{}) })
}

// TestRecordsKeyedByRoom checks the per-room ordering guarantee at its
// source: every record of one room lands in one partition.
func TestRecordsKeyedByRoom(t *testing.T) {
	l := openLog(t, testBrokers(t), Config{})
	testKeyedByRoom(t, l)
}

// TestUndecodableRecordsSkipped checks that garbage on the topic is logged,
// counted and committed past, and the messages around it still arrive.
func TestUndecodableRecordsSkipped(t *testing.T) {
	l := openLog(t, testBrokers(t), Config{Partitions: 1})
	testUndecodableSkipped(t, l)
}
