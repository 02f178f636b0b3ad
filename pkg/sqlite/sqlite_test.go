package sqlite_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/chatd/chatd/pkg/sqlite"
)

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openAccounts(tb testing.TB) *sqlite.Accounts {
	tb.Helper()
	a, err := sqlite.OpenAccounts(context.Background(), filepath.Join(tb.TempDir(), "accounts.db"), testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Error(err)
		}
	})
	return a
}

func openMessages(tb testing.TB, path string) *sqlite.Messages {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "messages.db")
	}
	m, err := sqlite.OpenMessages(context.Background(), path, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

func openSearch(tb testing.TB, path string) *sqlite.Search {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "search.db")
	}
	s, err := sqlite.OpenSearch(context.Background(), path, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func TestAccountStore(t *testing.T) {
	chattest.AccountStore(t, func(t *testing.T) chat.AccountStore { return openAccounts(t) })
}

func TestRoomStore(t *testing.T) {
	chattest.RoomStore(t, func(t *testing.T) chat.RoomStore { return openAccounts(t) })
}

func TestMessageStore(t *testing.T) {
	chattest.MessageStore(t, func(t *testing.T) chat.MessageStore { return openMessages(t, "") })
}

func TestSearchIndex(t *testing.T) {
	chattest.SearchIndex(t, func(t *testing.T) chat.SearchIndex { return openSearch(t, "") })
}
