package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"

	"github.com/chatd/chatd/pkg/chat"
)

// maxRows bounds one read, whatever limit a caller passes, so a bad limit
// cannot load a whole room into memory.
const maxRows = 10000

// Messages is the message store of the store role.
type Messages struct {
	db *db
	// Prepared once: parsing the SQL was a fifth of a latest-50 read.
	before, after *sql.Stmt
	insert        insertStmts
}

var _ chat.MessageStore = (*Messages)(nil)

// OpenMessages opens the message database at path, creating and migrating
// it as needed.
func OpenMessages(ctx context.Context, path string, log *slog.Logger) (*Messages, error) {
	d, err := openDB(ctx, path, "messages", false, log)
	if err != nil {
		return nil, err
	}
	m := &Messages{db: d}
	if m.insert, err = d.prepareInserts(ctx, func(n int) string { return insertMessages("room_id, id", n, "") }); err != nil {
		d.close()
		return nil, fmt.Errorf("open messages: %w", err)
	}
	if m.before, err = d.r.PrepareContext(ctx, `SELECT `+messageCols+` FROM messages
		WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?`); err != nil {
		d.close()
		return nil, fmt.Errorf("open messages: %w", err)
	}
	if m.after, err = d.r.PrepareContext(ctx, `SELECT `+messageCols+` FROM messages
		WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?`); err != nil {
		m.before.Close()
		d.close()
		return nil, fmt.Errorf("open messages: %w", err)
	}
	return m, nil
}

// Close closes the database.
func (m *Messages) Close() error {
	return errors.Join(m.before.Close(), m.after.Close(), m.db.close())
}

// WriteMessages stores msgs in one transaction, so a batch costs one commit,
// with many rows per statement, since per-statement overhead dominates the
// cost of small rows. A message whose (room, ID) is stored already is
// skipped, which makes redelivery from the log harmless.
func (m *Messages) WriteMessages(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	tx, err := m.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write messages: %w", err)
	}
	defer tx.Rollback()
	rest := msgs
	for _, n := range chunks(len(msgs)) {
		if _, err := m.insert.in(ctx, tx, n).ExecContext(ctx, messageArgs(rest[:n], true)...); err != nil {
			return fmt.Errorf("write messages: %w", err)
		}
		rest = rest[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write messages: %w", err)
	}
	return nil
}

// rowsPerInsert keeps a multi-row INSERT well under SQLite's limit of 32766
// bound parameters.
const rowsPerInsert = 200

// insertMessages returns an INSERT OR IGNORE of n messages into a table
// whose first columns are keyCols (in messageArgs' order), then suffix.
func insertMessages(keyCols string, n int, suffix string) string {
	var b strings.Builder
	b.WriteString("INSERT OR IGNORE INTO messages (" + keyCols + ", user_id, username, body, created_at, nonce, edited_at) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
	}
	b.WriteString(suffix)
	return b.String()
}

// messageArgs flattens msgs into insertMessages' parameters, the room
// first when roomFirst (the message store's key order), else the ID.
func messageArgs(msgs []chat.Message, roomFirst bool) []any {
	args := make([]any, 0, 8*len(msgs))
	for _, msg := range msgs {
		if roomFirst {
			args = append(args, int64(msg.RoomID), int64(msg.ID))
		} else {
			args = append(args, int64(msg.ID), int64(msg.RoomID))
		}
		args = append(args, int64(msg.UserID), msg.Username, msg.Body, toNanos(msg.CreatedAt), msg.Nonce, toNullNanos(msg.EditedAt))
	}
	return args
}

const messageCols = `id, room_id, user_id, username, body, created_at, nonce, edited_at`

// MessagesBefore returns the newest limit messages of the room below before
// (0: the newest overall), oldest first.
func (m *Messages) MessagesBefore(ctx context.Context, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if before <= 0 {
		before = math.MaxInt64
	}
	// The newest first is a backwards walk of the primary key; reversing
	// the page in Go is cheaper than a sort in SQL.
	msgs, err := queryMessagesTx(ctx, stmtQuerier{m.before}, "", int64(roomID), int64(before), min(limit, maxRows))
	if err != nil {
		return nil, fmt.Errorf("messages before: %w", err)
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// MessagesAfter returns the oldest limit messages of the room above after,
// oldest first.
func (m *Messages) MessagesAfter(ctx context.Context, roomID, after chat.ID, limit int) ([]chat.Message, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	msgs, err := queryMessagesTx(ctx, stmtQuerier{m.after}, "", int64(roomID), int64(after), min(limit, maxRows))
	if err != nil {
		return nil, fmt.Errorf("messages after: %w", err)
	}
	return msgs, nil
}

func queryMessages(ctx context.Context, d *db, query string, args ...any) ([]chat.Message, error) {
	return queryMessagesTx(ctx, d.r, query, args...)
}

// stmtQuerier lets a prepared statement stand where queryMessagesTx takes
// SQL text; the text is ignored.
type stmtQuerier struct{ *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.Stmt.QueryContext(ctx, args...)
}

func queryMessagesTx(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]chat.Message, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	msgs := []chat.Message{}
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, rows.Err()
}

func scanMessage(row interface{ Scan(...any) error }, extra ...any) (chat.Message, error) {
	var msg chat.Message
	var id, room, user, created int64
	var edited sql.NullInt64
	if err := row.Scan(append([]any{&id, &room, &user, &msg.Username, &msg.Body, &created, &msg.Nonce, &edited}, extra...)...); err != nil {
		return chat.Message{}, err
	}
	msg.ID, msg.RoomID, msg.UserID, msg.CreatedAt = chat.ID(id), chat.ID(room), chat.ID(user), fromNanos(created)
	msg.EditedAt = fromNullNanos(edited)
	return msg, nil
}
