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
	"github.com/chatd/chatd/pkg/config"
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

// TestSASLOverTLS runs against the real broker's SASL_SSL listener
// (scripts/testservers/kafka.sh: user chatd, a private CA): every
// mechanism chatd offers authenticates, a wrong password does not.
func TestSASLOverTLS(t *testing.T) {
	brokers, ca := os.Getenv("CHATD_TEST_KAFKA_SASL_BROKERS"), os.Getenv("CHATD_TEST_KAFKA_TLS_CA")
	if brokers == "" || ca == "" {
		t.Skip("CHATD_TEST_KAFKA_SASL_BROKERS and CHATD_TEST_KAFKA_TLS_CA not set")
	}
	// The CA file is read as chatd reads [kafka.tls].
	tlsCfg, err := config.TLS{Enabled: true, CAFile: ca}.Client()
	if err != nil {
		t.Fatal(err)
	}
	user, pass := os.Getenv("CHATD_TEST_KAFKA_SASL_USER"), os.Getenv("CHATD_TEST_KAFKA_SASL_PASSWORD")
	if user == "" {
		user, pass = "chatd", "chatd-secret"
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			m, err := Mechanism(mech, user, pass)
			if err != nil {
				t.Fatal(err)
			}
			appendAndConsume(t, openLog(t, strings.Split(brokers, ","), Config{Partitions: 1, TLS: tlsCfg, SASL: m}))
			wrong, _ := Mechanism(mech, user, "wrong")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if l, err := NewLog(ctx, Config{Brokers: strings.Split(brokers, ","), Topic: randomName("chatd-refused-"), TLS: tlsCfg, SASL: wrong}, testLogger(t)); err == nil {
				l.Close()
				t.Fatal("a wrong password was accepted")
			}
		})
	}
}
