package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// Accounts is the account and room store of the user and room roles.
type Accounts struct {
	db *db
}

var (
	_ chat.AccountStore = (*Accounts)(nil)
	_ chat.RoomStore    = (*Accounts)(nil)
)

// OpenAccounts opens the accounts database at path, creating and migrating it
// as needed.
func OpenAccounts(ctx context.Context, path string, log *slog.Logger) (*Accounts, error) {
	d, err := openDB(ctx, path, "accounts", true, log)
	if err != nil {
		return nil, err
	}
	return &Accounts{db: d}, nil
}

// Close closes the database.
func (a *Accounts) Close() error { return a.db.close() }

// CreateUser stores u with its password hash. ECONFLICT if the username (or
// the ID) is taken.
func (a *Accounts) CreateUser(ctx context.Context, u chat.User, passwordHash string) error {
	_, err := a.db.w.ExecContext(ctx, `INSERT INTO users (id, username, display_name, email, password_hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		int64(u.ID), u.Username, u.DisplayName, u.Email, passwordHash, toNanos(u.CreatedAt))
	if isConstraint(err) {
		return chat.Errorf(chat.ECONFLICT, "username %q is taken", u.Username)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

const userCols = `id, username, display_name, email, created_at`

func scanUser(row interface{ Scan(...any) error }, extra ...any) (chat.User, error) {
	var u chat.User
	var id, created int64
	if err := row.Scan(append([]any{&id, &u.Username, &u.DisplayName, &u.Email, &created}, extra...)...); err != nil {
		return chat.User{}, err
	}
	u.ID, u.CreatedAt = chat.ID(id), fromNanos(created)
	return u, nil
}

// UserByID returns the user. ENOTFOUND if none.
func (a *Accounts) UserByID(ctx context.Context, id chat.ID) (chat.User, error) {
	u, err := scanUser(a.db.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, int64(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	if err != nil {
		return chat.User{}, fmt.Errorf("user by id: %w", err)
	}
	return u, nil
}

// UserByUsername returns the user and its password hash. ENOTFOUND if none.
func (a *Accounts) UserByUsername(ctx context.Context, username string) (chat.User, string, error) {
	var hash string
	u, err := scanUser(a.db.r.QueryRowContext(ctx, `SELECT `+userCols+`, password_hash FROM users WHERE username = ?`, username), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, "", chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	if err != nil {
		return chat.User{}, "", fmt.Errorf("user by username: %w", err)
	}
	return u, hash, nil
}

// CreateSession stores s. ECONFLICT if its token hash exists already.
func (a *Accounts) CreateSession(ctx context.Context, s chat.Session) error {
	_, err := a.db.w.ExecContext(ctx, `INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		s.TokenHash, int64(s.UserID), toNanos(s.CreatedAt), toNanos(s.ExpiresAt))
	if isConstraint(err) {
		return chat.Errorf(chat.ECONFLICT, "session exists")
	}
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session returns the session, expired or not. ENOTFOUND if none.
func (a *Accounts) Session(ctx context.Context, tokenHash string) (chat.Session, error) {
	s := chat.Session{TokenHash: tokenHash}
	var user, created, expires int64
	err := a.db.r.QueryRowContext(ctx, `SELECT user_id, created_at, expires_at FROM sessions WHERE token_hash = ?`, tokenHash).
		Scan(&user, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Session{}, chat.Errorf(chat.ENOTFOUND, "session not found")
	}
	if err != nil {
		return chat.Session{}, fmt.Errorf("session: %w", err)
	}
	s.UserID, s.CreatedAt, s.ExpiresAt = chat.ID(user), fromNanos(created), fromNanos(expires)
	return s, nil
}

// DeleteSession removes a session; a missing one is not an error.
func (a *Accounts) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := a.db.w.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions that expired before t.
func (a *Accounts) DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error) {
	res, err := a.db.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, toNanos(t))
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}

// CreateRoom stores r and makes its owner a member, in one transaction so a
// room never exists without its owner. ECONFLICT if the ID exists.
func (a *Accounts) CreateRoom(ctx context.Context, r chat.Room) error {
	tx, err := a.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO rooms (id, name, description, private, owner_id, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		int64(r.ID), r.Name, r.Description, r.Private, int64(r.OwnerID), toNanos(r.CreatedAt))
	if isConstraint(err) {
		return chat.Errorf(chat.ECONFLICT, "room exists")
	}
	if err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO members (room_id, user_id) VALUES (?, ?)`, int64(r.ID), int64(r.OwnerID)); err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	return nil
}

const roomCols = `id, name, description, private, owner_id, created_at`

func scanRoom(row interface{ Scan(...any) error }) (chat.Room, error) {
	var r chat.Room
	var id, owner, created int64
	if err := row.Scan(&id, &r.Name, &r.Description, &r.Private, &owner, &created); err != nil {
		return chat.Room{}, err
	}
	r.ID, r.OwnerID, r.CreatedAt = chat.ID(id), chat.ID(owner), fromNanos(created)
	return r, nil
}

// Room returns the room. ENOTFOUND if none.
func (a *Accounts) Room(ctx context.Context, id chat.ID) (chat.Room, error) {
	r, err := scanRoom(a.db.r.QueryRowContext(ctx, `SELECT `+roomCols+` FROM rooms WHERE id = ?`, int64(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Room{}, chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	if err != nil {
		return chat.Room{}, fmt.Errorf("room: %w", err)
	}
	return r, nil
}

// UpdateRoom writes r's name and description. ENOTFOUND if none.
func (a *Accounts) UpdateRoom(ctx context.Context, r chat.Room) error {
	res, err := a.db.w.ExecContext(ctx, `UPDATE rooms SET name = ?, description = ? WHERE id = ?`, r.Name, r.Description, int64(r.ID))
	if err != nil {
		return fmt.Errorf("update room: %w", err)
	}
	return mustAffect(res, "update room", "room not found")
}

// DeleteRoom removes the room; its memberships go with it by the foreign
// key's cascade. ENOTFOUND if none.
func (a *Accounts) DeleteRoom(ctx context.Context, id chat.ID) error {
	res, err := a.db.w.ExecContext(ctx, `DELETE FROM rooms WHERE id = ?`, int64(id))
	if err != nil {
		return fmt.Errorf("delete room: %w", err)
	}
	return mustAffect(res, "delete room", "room not found")
}

// ListRooms returns the public rooms and the private rooms userID is a member
// of, ordered by ID.
func (a *Accounts) ListRooms(ctx context.Context, userID chat.ID) ([]chat.Room, error) {
	rows, err := a.db.r.QueryContext(ctx, `SELECT `+roomCols+` FROM rooms WHERE private = 0
		UNION ALL
		SELECT `+roomCols+` FROM rooms WHERE private <> 0 AND id IN (SELECT room_id FROM members WHERE user_id = ?)
		ORDER BY id`, int64(userID))
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	rooms := []chat.Room{}
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("list rooms: %w", err)
		}
		rooms = append(rooms, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return rooms, nil
}

// AddMember makes userID a member of roomID; twice is not an error.
// ENOTFOUND if the room does not exist.
func (a *Accounts) AddMember(ctx context.Context, roomID, userID chat.ID) error {
	// Inserting from the room row makes a missing room insert nothing,
	// without a separate read racing a concurrent delete.
	res, err := a.db.w.ExecContext(ctx, `INSERT INTO members (room_id, user_id) SELECT id, ? FROM rooms WHERE id = ?
		ON CONFLICT DO NOTHING`, int64(userID), int64(roomID))
	if err != nil {
		return fmt.Errorf("add member: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("add member: %w", err)
	} else if n > 0 {
		return nil
	}
	// Nothing inserted: the member was there already, or there is no room.
	if _, err := a.Room(ctx, roomID); err != nil {
		return err
	}
	return nil
}

// RemoveMember removes the membership. ENOTFOUND if there is none.
func (a *Accounts) RemoveMember(ctx context.Context, roomID, userID chat.ID) error {
	res, err := a.db.w.ExecContext(ctx, `DELETE FROM members WHERE room_id = ? AND user_id = ?`, int64(roomID), int64(userID))
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	return mustAffect(res, "remove member", "membership not found")
}

// IsMember reports whether userID is a member of roomID.
func (a *Accounts) IsMember(ctx context.Context, roomID, userID chat.ID) (bool, error) {
	var n int
	err := a.db.r.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE room_id = ? AND user_id = ?`, int64(roomID), int64(userID)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("is member: %w", err)
	}
	return n > 0, nil
}

// Members returns up to limit member IDs of roomID above after, ascending.
func (a *Accounts) Members(ctx context.Context, roomID, after chat.ID, limit int) ([]chat.ID, error) {
	got, err := queryInts(ctx, a.db.r, `SELECT user_id FROM members WHERE room_id = ? AND user_id > ?
		ORDER BY user_id LIMIT ?`, int64(roomID), int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	ids := make([]chat.ID, len(got))
	for i, id := range got {
		ids[i] = chat.ID(id)
	}
	return ids, nil
}

func mustAffect(res sql.Result, op, notFound string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		return chat.Errorf(chat.ENOTFOUND, "%s", notFound)
	}
	return nil
}
