package chattest

import (
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// AccountStore runs the conformance suite of chat.AccountStore.
func AccountStore(t *testing.T, open func(t *testing.T) chat.AccountStore) {
	t.Run("CreateAndRead", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		u := chat.User{ID: nextID(g), Username: "alice", DisplayName: "Alice 🎉 אליס", Email: "alice@example.com",
			CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)}
		noErr(t, "CreateUser", s.CreateUser(ctx, u, "hash$alice"))

		got, err := s.UserByID(ctx, u.ID)
		noErr(t, "UserByID", err)
		checkUser(t, "UserByID", got, u)

		got, hash, err := s.UserByUsername(ctx, "alice")
		noErr(t, "UserByUsername", err)
		checkUser(t, "UserByUsername", got, u)
		if hash != "hash$alice" {
			t.Fatalf("password hash %q, want %q", hash, "hash$alice")
		}
	})

	t.Run("UsernameTaken", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		noErr(t, "CreateUser", s.CreateUser(ctx, chat.User{ID: nextID(g), Username: "bob", CreatedAt: time.Now()}, "h1"))
		err := s.CreateUser(ctx, chat.User{ID: nextID(g), Username: "bob", CreatedAt: time.Now()}, "h2")
		wantCode(t, "CreateUser with a taken username", err, chat.ECONFLICT)
		// The loser must not have replaced the winner.
		_, hash, err := s.UserByUsername(ctx, "bob")
		noErr(t, "UserByUsername", err)
		if hash != "h1" {
			t.Fatalf("hash %q after conflict, want h1", hash)
		}
		// Usernames are unique exactly as given.
		noErr(t, "CreateUser Bob", s.CreateUser(ctx, chat.User{ID: nextID(g), Username: "Bob", CreatedAt: time.Now()}, "h3"))
	})

	t.Run("NotFound", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		noErr(t, "CreateUser", s.CreateUser(ctx, chat.User{ID: nextID(g), Username: "carol", CreatedAt: time.Now()}, "h"))
		_, err := s.UserByID(ctx, nextID(g))
		wantCode(t, "UserByID missing", err, chat.ENOTFOUND)
		for _, name := range []string{"nobody", "Carol", "carol ", "", "' OR '1'='1", "carol%", "car_l", "🎉", "\\"} {
			_, _, err := s.UserByUsername(ctx, name)
			wantCode(t, "UserByUsername "+name, err, chat.ENOTFOUND)
		}
		_, err = s.Session(ctx, "deadbeef")
		wantCode(t, "Session missing", err, chat.ENOTFOUND)
	})

	t.Run("Sessions", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		u := chat.User{ID: nextID(g), Username: "dave", CreatedAt: time.Now()}
		noErr(t, "CreateUser", s.CreateUser(ctx, u, "h"))
		now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
		live := chat.Session{TokenHash: "aa11", UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		expired := chat.Session{TokenHash: "bb22", UserID: u.ID, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
		edge := chat.Session{TokenHash: "cc33", UserID: u.ID, CreatedAt: now.Add(-time.Hour), ExpiresAt: now}
		for _, sess := range []chat.Session{live, expired, edge} {
			noErr(t, "CreateSession", s.CreateSession(ctx, sess))
		}
		for _, want := range []chat.Session{live, expired, edge} {
			got, err := s.Session(ctx, want.TokenHash)
			noErr(t, "Session (expired ones too)", err)
			if got.TokenHash != want.TokenHash || got.UserID != want.UserID ||
				!sameTime(got.CreatedAt, want.CreatedAt) || !sameTime(got.ExpiresAt, want.ExpiresAt) {
				t.Fatalf("Session = %+v, want %+v", got, want)
			}
		}

		// Only sessions that expired strictly before now go.
		n, err := s.DeleteExpiredSessions(ctx, now)
		noErr(t, "DeleteExpiredSessions", err)
		if n != 1 {
			t.Fatalf("DeleteExpiredSessions deleted %d, want 1", n)
		}
		_, err = s.Session(ctx, expired.TokenHash)
		wantCode(t, "expired session after DeleteExpiredSessions", err, chat.ENOTFOUND)
		for _, keep := range []string{live.TokenHash, edge.TokenHash} {
			_, err = s.Session(ctx, keep)
			noErr(t, "unexpired session after DeleteExpiredSessions", err)
		}
		n, err = s.DeleteExpiredSessions(ctx, now)
		noErr(t, "DeleteExpiredSessions again", err)
		if n != 0 {
			t.Fatalf("DeleteExpiredSessions again deleted %d, want 0", n)
		}

		noErr(t, "DeleteSession", s.DeleteSession(ctx, live.TokenHash))
		_, err = s.Session(ctx, live.TokenHash)
		wantCode(t, "deleted session", err, chat.ENOTFOUND)
		noErr(t, "DeleteSession missing", s.DeleteSession(ctx, live.TokenHash))
		noErr(t, "DeleteSession hostile", s.DeleteSession(ctx, "' OR 1=1 --"))
		_, err = s.Session(ctx, edge.TokenHash)
		noErr(t, "other session after DeleteSession", err)
	})
}

func checkUser(tb testing.TB, what string, got, want chat.User) {
	tb.Helper()
	if got.ID != want.ID || got.Username != want.Username || got.DisplayName != want.DisplayName ||
		got.Email != want.Email || !sameTime(got.CreatedAt, want.CreatedAt) {
		tb.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}
