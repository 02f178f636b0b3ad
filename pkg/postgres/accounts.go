package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatd/chatd/pkg/chat"
)

// CreateUser stores u with its password hash. ECONFLICT if the username (or
// the ID) is taken.
func (db *DB) CreateUser(ctx context.Context, u chat.User, passwordHash string) error {
	at, ns := splitTime(u.CreatedAt)
	_, err := db.pool.Exec(ctx, `INSERT INTO users (id, username, display_name, email, password_hash, created_at, created_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		int64(u.ID), u.Username, u.DisplayName, u.Email, passwordHash, at, ns)
	if pgCode(err) == pgUniqueViolation {
		return chat.Errorf(chat.ECONFLICT, "username %q is taken", u.Username)
	}
	if err != nil {
		return fmt.Errorf("postgres: create user: %w", dbErr(err))
	}
	return nil
}

const userColumns = "id, username, display_name, email, created_at, created_ns"

func scanUser(row pgx.Row, extra ...any) (chat.User, error) {
	var (
		u  chat.User
		id int64
		at time.Time
		ns int16
	)
	dest := append([]any{&id, &u.Username, &u.DisplayName, &u.Email, &at, &ns}, extra...)
	if err := row.Scan(dest...); err != nil {
		return chat.User{}, err
	}
	u.ID = chat.ID(id)
	u.CreatedAt = joinTime(at, ns)
	return u, nil
}

// UserByID returns the user. ENOTFOUND if none.
func (db *DB) UserByID(ctx context.Context, id chat.ID) (chat.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, "SELECT "+userColumns+" FROM users WHERE id = $1", int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	if err != nil {
		return chat.User{}, fmt.Errorf("postgres: user by id: %w", dbErr(err))
	}
	return u, nil
}

// UserByUsername returns the user and its password hash. ENOTFOUND if none.
func (db *DB) UserByUsername(ctx context.Context, username string) (chat.User, string, error) {
	var hash string
	u, err := scanUser(db.pool.QueryRow(ctx,
		"SELECT "+userColumns+", password_hash FROM users WHERE username = $1", username), &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.User{}, "", chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	if err != nil {
		return chat.User{}, "", fmt.Errorf("postgres: user by username: %w", dbErr(err))
	}
	return u, hash, nil
}

// CreateSession stores s. ECONFLICT if its token hash exists already.
func (db *DB) CreateSession(ctx context.Context, s chat.Session) error {
	cat, cns := splitTime(s.CreatedAt)
	eat, ens := splitTime(s.ExpiresAt)
	_, err := db.pool.Exec(ctx, `INSERT INTO sessions (token_hash, user_id, created_at, created_ns, expires_at, expires_ns)
		VALUES ($1, $2, $3, $4, $5, $6)`, s.TokenHash, int64(s.UserID), cat, cns, eat, ens)
	if pgCode(err) == pgUniqueViolation {
		return chat.Errorf(chat.ECONFLICT, "session exists")
	}
	if err != nil {
		return fmt.Errorf("postgres: create session: %w", dbErr(err))
	}
	return nil
}

// Session returns the session with that token hash, expired or not.
// ENOTFOUND if none.
func (db *DB) Session(ctx context.Context, tokenHash string) (chat.Session, error) {
	var (
		s        = chat.Session{TokenHash: tokenHash}
		uid      int64
		cat, eat time.Time
		cns, ens int16
	)
	err := db.pool.QueryRow(ctx, `SELECT user_id, created_at, created_ns, expires_at, expires_ns
		FROM sessions WHERE token_hash = $1`, tokenHash).Scan(&uid, &cat, &cns, &eat, &ens)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Session{}, chat.Errorf(chat.ENOTFOUND, "session not found")
	}
	if err != nil {
		return chat.Session{}, fmt.Errorf("postgres: session: %w", dbErr(err))
	}
	s.UserID = chat.ID(uid)
	s.CreatedAt = joinTime(cat, cns)
	s.ExpiresAt = joinTime(eat, ens)
	return s, nil
}

// DeleteSession removes a session; a missing one is not an error.
func (db *DB) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE token_hash = $1", tokenHash); err != nil {
		return fmt.Errorf("postgres: delete session: %w", dbErr(err))
	}
	return nil
}

// DeleteExpiredSessions removes the sessions that expired before t.
func (db *DB) DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error) {
	at, ns := splitTime(t)
	// The row comparison orders by microseconds, then by the nanosecond
	// remainder, and can use sessions_expires_idx.
	tag, err := db.pool.Exec(ctx, "DELETE FROM sessions WHERE (expires_at, expires_ns) < ($1, $2)", at, ns)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete expired sessions: %w", dbErr(err))
	}
	return tag.RowsAffected(), nil
}
