package scylla

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/config"
)

func testHosts(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv("CHATD_TEST_CASSANDRA_HOSTS")
	if v == "" {
		tb.Skip("CHATD_TEST_CASSANDRA_HOSTS not set")
	}
	return strings.Split(v, ",")
}

// testConfig is the test server's hosts and credentials
// (CHATD_TEST_CASSANDRA_USERNAME and _PASSWORD: it requires a login, as a
// production ScyllaDB does).
func testConfig(tb testing.TB) Config {
	tb.Helper()
	return Config{Hosts: testHosts(tb), Username: os.Getenv("CHATD_TEST_CASSANDRA_USERNAME"),
		Password: os.Getenv("CHATD_TEST_CASSANDRA_PASSWORD"), Timeout: 30 * time.Second}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// Schema changes are slow on a small Cassandra (seconds each), so the test
// binary creates one keyspace per bucket span and shares it. Sharing is safe
// because every conformance subtest writes to fresh Snowflake room IDs, so
// no subtest can see another's messages.
var (
	keyspacesMu sync.Mutex
	keyspaces   = map[time.Duration]string{}
)

func openStore(tb testing.TB, span time.Duration) *Store {
	tb.Helper()
	cfg := testConfig(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keyspacesMu.Lock()
	defer keyspacesMu.Unlock()
	ks, ok := keyspaces[span]
	fresh := !ok
	if fresh {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		ks = "chatd_test_" + hex.EncodeToString(b)
	}
	cfg.Keyspace, cfg.BucketSpan = ks, span
	s, err := Open(ctx, cfg, testLogger())
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if fresh {
		if err := s.Migrate(ctx); err != nil {
			tb.Fatalf("Migrate: %v", err)
		}
		keyspaces[span] = ks
	}
	return s
}

func TestMain(m *testing.M) {
	code := m.Run()
	dropKeyspaces()
	os.Exit(code)
}

func dropKeyspaces() {
	hosts := os.Getenv("CHATD_TEST_CASSANDRA_HOSTS")
	if hosts == "" || len(keyspaces) == 0 {
		return
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Hosts: strings.Split(hosts, ","), Timeout: 30 * time.Second,
		Username: os.Getenv("CHATD_TEST_CASSANDRA_USERNAME"), Password: os.Getenv("CHATD_TEST_CASSANDRA_PASSWORD")}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drop test keyspaces:", err)
		return
	}
	defer s.Close()
	for _, ks := range keyspaces {
		if err := s.session.Query("DROP KEYSPACE IF EXISTS " + ks).WithContext(ctx).Exec(); err != nil {
			fmt.Fprintln(os.Stderr, "drop keyspace", ks, err)
		}
	}
}

func TestMessageStoreConformance(t *testing.T) {
	chattest.MessageStore(t, func(t *testing.T) chat.MessageStore { return openStore(t, time.Hour) })
}

// TestBucketWalk spreads a room's messages over many buckets with gaps
// between them (a 1h span, messages days apart), and checks that reads and
// paging cross buckets in both directions, skip empty ones, and stop at the
// room's first and last bucket.
func TestBucketWalk(t *testing.T) {
	s := openStore(t, time.Hour)
	ctx := context.Background()
	g, _ := chat.NewIDGen(3)
	room, _ := g.Next()
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var all []chat.Message
	for i := range 40 {
		// Four messages per busy hour, busy hours 1 to 3 days apart.
		at := base.Add(time.Duration(i/4)*(36*time.Hour) + time.Duration(i%4)*time.Minute + 123456789)
		all = append(all, chat.Message{
			ID: chat.MinIDAt(at) + chat.ID(i), RoomID: room, UserID: 1, Username: "u",
			Body: fmt.Sprintf("m%d", i), CreatedAt: at,
		})
	}
	if err := s.WriteMessages(ctx, all); err != nil {
		t.Fatal(err)
	}
	got, err := s.MessagesBefore(ctx, room, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "before all", got, all)
	got, err = s.MessagesBefore(ctx, room, all[21].ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "before 21", got, all[11:21])
	got, err = s.MessagesAfter(ctx, room, all[5].ID, 9)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "after 5", got, all[6:15])
	// A bound far past the room's messages in either direction.
	got, err = s.MessagesBefore(ctx, room, chat.MinIDAt(base.Add(-24*time.Hour)), 10)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "before the first bucket", got, nil)
	got, err = s.MessagesAfter(ctx, room, chat.MinIDAt(time.Now().Add(24*time.Hour)), 10)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "after the last bucket", got, nil)
	// Paging backwards three at a time crosses every bucket boundary.
	var paged []chat.Message
	before := chat.ID(0)
	for {
		page, err := s.MessagesBefore(ctx, room, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(page, paged...)
		before = page[0].ID
	}
	checkIDs(t, "paged", paged, all)
	for i := range paged {
		if !paged[i].CreatedAt.Equal(all[i].CreatedAt) {
			t.Fatalf("message %d created_at %v, want %v", i, paged[i].CreatedAt, all[i].CreatedAt)
		}
	}
}

func checkIDs(t *testing.T, what string, got, want []chat.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Fatalf("%s: message %d is %d, want %d", what, i, got[i].ID, want[i].ID)
		}
	}
}

// TestBucketSpanIsFixed checks that a keyspace refuses a second span.
func TestBucketSpanIsFixed(t *testing.T) {
	s := openStore(t, time.Hour)
	cfg := testConfig(t)
	cfg.Keyspace, cfg.BucketSpan = s.cfg.Keyspace, 2*time.Hour
	other, err := Open(context.Background(), cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Migrate(context.Background()); err == nil || !strings.Contains(err.Error(), "bucket_span") {
		t.Fatalf("Migrate with another span: %v, want a bucket_span error", err)
	}
}

func TestSplitTime(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Date(2026, 11, 27, 7, 33, 16, 123456789, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC),
	} {
		got := joinTime(splitTime(tm))
		if !got.Equal(tm) || got.Location() != time.UTC {
			t.Errorf("joinTime(splitTime(%v)) = %v", tm, got)
		}
	}
}

func TestSplitCQL(t *testing.T) {
	got := splitCQL("-- a comment; with a semicolon\nCREATE x;\n\n  -- another\nCREATE y (a int);\n")
	if len(got) != 2 || got[0] != "CREATE x" || got[1] != "CREATE y (a int)" {
		t.Fatalf("splitCQL = %q", got)
	}
}

// TestLoginAndTLSOnRealServer runs against the test Cassandra, which
// requires a login and takes TLS on its CQL port: the store logs in, a bad
// password or none is refused with the server's reason, and over TLS the
// node's certificate is verified against the configured CA.
func TestLoginAndTLSOnRealServer(t *testing.T) {
	base := testConfig(t)
	if base.Username == "" {
		t.Skip("CHATD_TEST_CASSANDRA_USERNAME not set")
	}
	open := func(cfg Config) (*Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cfg.Timeout = 10 * time.Second
		return Open(ctx, cfg, testLogger())
	}
	for name, mod := range map[string]func(*Config){
		"wrong password": func(c *Config) { c.Password += "-wrong" },
		"no login":       func(c *Config) { c.Username, c.Password = "", "" },
	} {
		cfg := base
		mod(&cfg)
		if s, err := open(cfg); err == nil {
			s.Close()
			t.Errorf("%s: connected", name)
		} else if !strings.Contains(strings.ToLower(err.Error()), "auth") && !strings.Contains(err.Error(), "password") {
			t.Errorf("%s: %v, want the server's authentication error", name, err)
		}
	}

	caFile := os.Getenv("CHATD_TEST_CASSANDRA_TLS_CA")
	if caFile == "" {
		t.Skip("CHATD_TEST_CASSANDRA_TLS_CA not set")
	}
	// Over TLS, logged in: a write and a read through the same session,
	// the CA file read as chatd reads [scylla.tls].
	cfg := base
	var err error
	if cfg.TLS, err = (config.TLS{Enabled: true, CAFile: caFile}).Client(); err != nil {
		t.Fatal(err)
	}
	cfg.Keyspace = openStore(t, time.Hour).cfg.Keyspace // created and migrated already
	s, err := open(cfg)
	if err != nil {
		t.Fatalf("open over TLS: %v", err)
	}
	defer s.Close()
	g, _ := chat.NewIDGen(5)
	room, _ := g.Next()
	id, at := g.Next()
	m := chat.Message{ID: id, RoomID: room, UserID: 1, Username: "u", Body: "over tls", CreatedAt: at}
	ctx := context.Background()
	if err := s.WriteMessages(ctx, []chat.Message{m}); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}
	got, err := s.MessagesBefore(ctx, room, 0, 10)
	if err != nil || len(got) != 1 || got[0].Body != "over tls" {
		t.Fatalf("read over TLS: %v %v", got, err)
	}

	// A CA that did not sign the node's certificate is refused.
	other := chattest.NewCerts(t)
	cfg.TLS = other.ClientTLS
	if s, err := open(cfg); err == nil {
		s.Close()
		t.Fatal("connected over TLS to a node the configured CA did not sign")
	}
}
