package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatd/chatd/pkg/chat"
)

// CreateRoom stores r and makes its owner a member, in one transaction so a
// room never exists without its owner's membership. ECONFLICT if the ID is
// taken.
func (db *DB) CreateRoom(ctx context.Context, r chat.Room) error {
	at, ns := splitTime(r.CreatedAt)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rooms (id, name, description, private, owner_id, created_at, created_ns)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			int64(r.ID), r.Name, r.Description, r.Private, int64(r.OwnerID), at, ns); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)", int64(r.ID), int64(r.OwnerID))
		return err
	})
	if pgCode(err) == pgUniqueViolation {
		return chat.Errorf(chat.ECONFLICT, "room exists")
	}
	if err != nil {
		return fmt.Errorf("postgres: create room: %w", dbErr(err))
	}
	return nil
}

const roomColumns = "id, name, description, private, owner_id, created_at, created_ns"

func scanRoom(row pgx.Row) (chat.Room, error) {
	var (
		r         chat.Room
		id, owner int64
		at        time.Time
		ns        int16
	)
	if err := row.Scan(&id, &r.Name, &r.Description, &r.Private, &owner, &at, &ns); err != nil {
		return chat.Room{}, err
	}
	r.ID, r.OwnerID, r.CreatedAt = chat.ID(id), chat.ID(owner), joinTime(at, ns)
	return r, nil
}

// Room returns the room. ENOTFOUND if none.
func (db *DB) Room(ctx context.Context, id chat.ID) (chat.Room, error) {
	r, err := scanRoom(db.pool.QueryRow(ctx, "SELECT "+roomColumns+" FROM rooms WHERE id = $1", int64(id)))
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	if err != nil {
		return chat.Room{}, fmt.Errorf("postgres: room: %w", dbErr(err))
	}
	return r, nil
}

// UpdateRoom writes r's name and description. ENOTFOUND if none.
func (db *DB) UpdateRoom(ctx context.Context, r chat.Room) error {
	tag, err := db.pool.Exec(ctx, "UPDATE rooms SET name = $2, description = $3 WHERE id = $1",
		int64(r.ID), r.Name, r.Description)
	if err != nil {
		return fmt.Errorf("postgres: update room: %w", dbErr(err))
	}
	if tag.RowsAffected() == 0 {
		return chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	return nil
}

// DeleteRoom removes the room; its memberships go with it (ON DELETE
// CASCADE). ENOTFOUND if none.
func (db *DB) DeleteRoom(ctx context.Context, id chat.ID) error {
	tag, err := db.pool.Exec(ctx, "DELETE FROM rooms WHERE id = $1", int64(id))
	if err != nil {
		return fmt.Errorf("postgres: delete room: %w", dbErr(err))
	}
	if tag.RowsAffected() == 0 {
		return chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	return nil
}

// ListRooms returns the public rooms and the private rooms userID is a member
// of, ordered by ID.
func (db *DB) ListRooms(ctx context.Context, userID chat.ID) ([]chat.Room, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+roomColumns+` FROM rooms r
		WHERE NOT r.private
		   OR EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = $1)
		ORDER BY r.id`, int64(userID))
	if err != nil {
		return nil, fmt.Errorf("postgres: list rooms: %w", dbErr(err))
	}
	rooms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Room, error) { return scanRoom(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list rooms: %w", dbErr(err))
	}
	if rooms == nil {
		// An empty list, not nil, so it renders as [] wherever it is encoded.
		rooms = []chat.Room{}
	}
	return rooms, nil
}

// AddMember makes userID a member of roomID; adding twice is not an error.
// ENOTFOUND if the room does not exist.
func (db *DB) AddMember(ctx context.Context, roomID, userID chat.ID) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)
		ON CONFLICT (room_id, user_id) DO NOTHING`, int64(roomID), int64(userID))
	if pgCode(err) == pgForeignKeyViolation {
		return chat.Errorf(chat.ENOTFOUND, "room not found")
	}
	if err != nil {
		return fmt.Errorf("postgres: add member: %w", dbErr(err))
	}
	return nil
}

// RemoveMember removes the membership. ENOTFOUND if there is none.
func (db *DB) RemoveMember(ctx context.Context, roomID, userID chat.ID) error {
	tag, err := db.pool.Exec(ctx, "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2", int64(roomID), int64(userID))
	if err != nil {
		return fmt.Errorf("postgres: remove member: %w", dbErr(err))
	}
	if tag.RowsAffected() == 0 {
		return chat.Errorf(chat.ENOTFOUND, "membership not found")
	}
	return nil
}

// Members returns up to limit member IDs of roomID above after, ascending.
func (db *DB) Members(ctx context.Context, roomID, after chat.ID, limit int) ([]chat.ID, error) {
	rows, err := db.pool.Query(ctx, `SELECT user_id FROM room_members WHERE room_id = $1 AND user_id > $2
		ORDER BY user_id LIMIT $3`, int64(roomID), int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", dbErr(err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[chat.ID])
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", dbErr(err))
	}
	return ids, nil
}

// IsMember reports whether userID is a member of roomID.
func (db *DB) IsMember(ctx context.Context, roomID, userID chat.ID) (bool, error) {
	var ok bool
	err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)",
		int64(roomID), int64(userID)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("postgres: is member: %w", dbErr(err))
	}
	return ok, nil
}
