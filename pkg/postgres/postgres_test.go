package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/postgres"
)

// testDSN returns the DSN of the integration-tier PostgreSQL, or skips:
// `go test ./...` must pass with nothing installed.
func testDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("CHATD_TEST_POSTGRES_DSN")
	if dsn == "" {
		tb.Skip("CHATD_TEST_POSTGRES_DSN not set; skipping PostgreSQL tests")
	}
	return dsn
}

// openSchema opens the test database with search_path set to a fresh schema
// that is dropped when the test ends, without migrating it.
func openSchema(tb testing.TB, schema string) *postgres.DB {
	tb.Helper()
	dsn := testDSN(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.OpenConfig(ctx, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 4}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(db.Close)
	return db
}

func freshSchema(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "chatd_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		// A separate connection: the test's pool may be closed already.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testDSN(tb))
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// newDB returns a migrated DB in a fresh schema.
func newDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	db := openSchema(tb, freshSchema(tb))
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return db
}

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	schema := freshSchema(t)
	// Several processes starting at once: separate pools, one schema.
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		db := openSchema(t, schema)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Migrate(context.Background())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	db := openSchema(t, schema)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	var count int
	if err := db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count == 0 {
		t.Fatal("no migrations recorded")
	}
	// The tables are in the schema, not in public.
	var table string
	err := db.Pool().QueryRow(context.Background(),
		"SELECT table_schema FROM information_schema.tables WHERE table_name = 'users' AND table_schema = $1", schema).Scan(&table)
	if err != nil {
		t.Fatalf("users table not in schema %s: %v", schema, err)
	}
}

func TestTimesRoundTripToTheNanosecond(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	created := time.Date(2026, 11, 27, 7, 55, 1, 123456789, time.UTC)
	u := chat.User{ID: 42, Username: "nano", DisplayName: "Nänö ✓", Email: "n@example.com", CreatedAt: created}
	if err := db.CreateUser(ctx, u, "hash"); err != nil {
		t.Fatal(err)
	}
	got, err := db.UserByID(ctx, 42)
	if err != nil {
		t.Fatal(err)
	}
	if got != u {
		t.Fatalf("user: got %+v, want %+v", got, u)
	}
	s := chat.Session{TokenHash: "abc", UserID: 42, CreatedAt: created, ExpiresAt: created.Add(time.Hour + 1)}
	if err := db.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	// One nanosecond before expiry: not expired; at expiry: not expired
	// (expired *before* t); one nanosecond later: expired.
	for _, c := range []struct {
		at   time.Time
		want int64
	}{{s.ExpiresAt.Add(-1), 0}, {s.ExpiresAt, 0}, {s.ExpiresAt.Add(1), 1}} {
		n, err := db.DeleteExpiredSessions(ctx, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Fatalf("DeleteExpiredSessions(%v) = %d, want %d", c.at, n, c.want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	u := chat.User{ID: 1, Username: "alice", CreatedAt: time.Now()}
	if err := db.CreateUser(ctx, u, "h"); err != nil {
		t.Fatal(err)
	}
	u.ID = 2
	err := db.CreateUser(ctx, u, "h")
	if chat.ErrorCode(err) != chat.ECONFLICT {
		t.Fatalf("duplicate username: %v, want conflict", err)
	}
	if _, err := db.UserByID(ctx, 99); chat.ErrorCode(err) != chat.ENOTFOUND {
		t.Fatalf("missing user: %v", err)
	}
	if err := db.AddMember(ctx, 12345, 1); chat.ErrorCode(err) != chat.ENOTFOUND {
		t.Fatalf("add member to missing room: %v", err)
	}

	// A broken query surfaces as internal without SQL text in the message.
	if _, err := db.Pool().Exec(ctx, "DROP TABLE room_members"); err != nil {
		t.Fatal(err)
	}
	_, err = db.IsMember(ctx, 1, 1)
	if chat.ErrorCode(err) != chat.EINTERNAL || chat.ErrorMessage(err) != "internal error" {
		t.Fatalf("broken table: code %q message %q", chat.ErrorCode(err), chat.ErrorMessage(err))
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once; no server needed.
	_, err := postgres.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", nil)
	if chat.ErrorCode(err) != chat.EUNAVAILABLE {
		t.Fatalf("open unreachable: %v, want unavailable", err)
	}
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatal("no *chat.Error in chain")
	}
	if _, err := postgres.Open(ctx, "::not a dsn::", nil); err == nil {
		t.Fatal("bad dsn accepted")
	}
}

func TestAccountStoreConformance(t *testing.T) {
	testDSN(t)
	chattest.AccountStore(t, func(t *testing.T) chat.AccountStore { return newDB(t) })
}

func TestRoomStoreConformance(t *testing.T) {
	testDSN(t)
	chattest.RoomStore(t, func(t *testing.T) chat.RoomStore { return newDB(t) })
}
