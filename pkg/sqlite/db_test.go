package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
)

func TestMigrationsOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for range 2 {
		a, err := OpenAccounts(ctx, filepath.Join(dir, "a.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := a.db.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("schema_migrations has %d rows, want 1", n)
		}
		var mode string
		var sync, fk int
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := a.db.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != 1 || fk != 1 {
			t.Fatalf("journal_mode %s synchronous %d foreign_keys %d, want wal 1 1", mode, sync, fk)
		}
		// Readers must not write, so a bug cannot take the writer's lock.
		if _, err := a.db.r.ExecContext(ctx, `DELETE FROM users`); err == nil {
			t.Fatal("a reader connection could write")
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMatchExpr(t *testing.T) {
	for q, want := range map[string]string{
		`hello`:                   `"hello"`,
		`Hello World`:             `"hello" AND "world"`,
		`"quick brown" fox*`:      `"quick brown" AND "fox"*`,
		`NEAR(a b) AND -c d:e ^f`: `"near a" AND "b" AND "and" AND "c" AND "d e" AND "f"`,
		`"unbalanced * phrase`:    `"unbalanced phrase"`,
		`e-mai*`:                  `"e mai"*`,
	} {
		terms, err := chat.ParseSearch(q)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchExpr(terms); got != want {
			t.Errorf("matchExpr(%q) = %s, want %s", q, got, want)
		}
	}
}

func TestBadPath(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenMessages(ctx, "", nil); err == nil {
		t.Fatal("empty path opened")
	}
	if _, err := OpenSearch(ctx, filepath.Join(t.TempDir(), "missing", "dir", "s.db"), nil); err == nil {
		t.Fatal("path in a missing directory opened")
	}
}

// A search index made before migration 0002 gets its docs backfilled, so
// search keeps finding its old messages after an upgrade.
func TestSearchDocsBackfill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenSearch(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := chat.Message{ID: 1 << 30, RoomID: 5, UserID: 6, Username: "u", Body: "backfilled words"}
	if err := s.IndexMessages(ctx, []chat.Message{msg}); err != nil {
		t.Fatal(err)
	}
	// Roll the schema back to version 1.
	for _, q := range []string{`DROP TABLE docs`, `DELETE FROM schema_migrations WHERE version = 2`} {
		if _, err := s.db.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = OpenSearch(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Search(ctx, chat.SearchQuery{Text: "backfilled", RoomIDs: []chat.ID{5}, UserID: 6, Limit: 10})
	if err != nil || len(res.Hits) != 1 {
		t.Fatalf("after backfill: %+v, %v", res, err)
	}
}
