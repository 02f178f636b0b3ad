package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// maxSearchOffset bounds how deep search paging goes: every page re-ranks
// all matches up to its offset. It is Elasticsearch's default result window,
// so both backends stop at the same depth.
const maxSearchOffset = 10000

// Search is the search index of the index and query roles: history by time
// range and full-text search on SQLite FTS5.
type Search struct {
	db *db
}

var _ chat.SearchIndex = (*Search)(nil)

// OpenSearch opens the search database at path, creating and migrating it as
// needed.
func OpenSearch(ctx context.Context, path string, log *slog.Logger) (*Search, error) {
	d, err := openDB(ctx, path, "search", false, log)
	if err != nil {
		return nil, err
	}
	return &Search{db: d}, nil
}

// Close closes the database.
func (s *Search) Close() error { return s.db.close() }

// IndexMessages adds msgs in one transaction. A message whose ID is indexed
// already is skipped, text and all, so redelivery from the log is harmless.
func (s *Search) IndexMessages(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	tx, err := s.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO messages
		(id, room_id, user_id, username, body, created_at, nonce, edited_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	defer ins.Close()
	fts, err := tx.PrepareContext(ctx, `INSERT INTO messages_fts (rowid, words) VALUES (?, ?)`)
	if err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	defer fts.Close()
	for _, msg := range msgs {
		res, err := ins.ExecContext(ctx, int64(msg.ID), int64(msg.RoomID), int64(msg.UserID), msg.Username, msg.Body,
			toNanos(msg.CreatedAt), msg.Nonce, toNullNanos(msg.EditedAt))
		if err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("index messages: %w", err)
		} else if n == 0 {
			continue // indexed already
		}
		// The words joined by single spaces are what the ascii tokenizer
		// splits back into exactly these words (see the migration).
		if _, err := fts.ExecContext(ctx, int64(msg.ID), strings.Join(chat.SearchWords(msg.Body), " ")); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	return nil
}

// idRange turns a [from, to) time range into an ID range [lo, hi).
func idRange(from, to time.Time) (lo, hi int64) {
	lo, hi = 0, math.MaxInt64
	if !from.IsZero() {
		lo = int64(chat.MinIDAt(from))
	}
	if !to.IsZero() {
		hi = int64(chat.MinIDAt(to))
	}
	return lo, hi
}

// History returns the room's messages in [From, To), oldest first. The
// cursor is the last ID of the previous page, so paging is stable while
// messages are being indexed.
func (s *Search) History(ctx context.Context, q chat.HistoryQuery) (chat.HistoryPage, error) {
	if err := checkLimit(q.Limit); err != nil {
		return chat.HistoryPage{}, err
	}
	limit := min(q.Limit, maxRows)
	lo, hi := idRange(q.From, q.To)
	if q.Cursor != "" {
		vals, err := decodeCursor(q.Cursor, "h", 1)
		if err != nil {
			return chat.HistoryPage{}, err
		}
		lo = max(lo, vals[0]+1)
	}
	msgs, err := queryMessages(ctx, s.db, `SELECT `+messageCols+` FROM messages
		WHERE room_id = ? AND id >= ? AND id < ? ORDER BY id LIMIT ?`, int64(q.RoomID), lo, hi, limit+1)
	if err != nil {
		return chat.HistoryPage{}, fmt.Errorf("history: %w", err)
	}
	page := chat.HistoryPage{Messages: msgs}
	if len(msgs) > limit {
		page.Messages = msgs[:limit]
		page.NextCursor = encodeCursor("h", int64(msgs[limit-1].ID))
	}
	return page, nil
}

// Search runs a full-text query: every term must match, best bm25 score
// first, newest first among equals. The cursor holds the offset of the next
// page and the highest ID at the first page, so messages indexed while a
// client pages neither shift the pages nor show up twice.
func (s *Search) Search(ctx context.Context, q chat.SearchQuery) (chat.SearchResult, error) {
	terms, err := chat.ParseSearch(q.Text)
	if err != nil {
		return chat.SearchResult{}, err
	}
	if err := checkLimit(q.Limit); err != nil {
		return chat.SearchResult{}, err
	}
	limit := min(q.Limit, chat.MaxPageLimit)
	var offset, upTo int64 = 0, -1
	if q.Cursor != "" {
		vals, err := decodeCursor(q.Cursor, "s", 2)
		if err != nil {
			return chat.SearchResult{}, err
		}
		offset, upTo = vals[0], vals[1]
		if offset < 0 || offset > maxSearchOffset {
			return chat.SearchResult{}, chat.Errorf(chat.EINVALID, "invalid cursor")
		}
	}
	res := chat.SearchResult{Hits: []chat.SearchHit{}}
	if len(q.RoomIDs) == 0 {
		return res, nil
	}
	tx, err := s.db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	defer tx.Rollback()
	if upTo < 0 {
		var maxID sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(id) FROM messages`).Scan(&maxID); err != nil {
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		upTo = maxID.Int64
	}
	lo, hi := idRange(q.From, q.To)
	hi = min(hi, upTo+1)
	rooms := make([]string, len(q.RoomIDs))
	for i, id := range q.RoomIDs {
		rooms[i] = strconv.FormatInt(int64(id), 10)
	}
	// The room list goes in as one JSON array parameter, so any number of
	// rooms is one bound value and never SQL text.
	where := `messages_fts MATCH ? AND m.room_id IN (SELECT value FROM json_each(?)) AND m.id >= ? AND m.id < ?`
	args := []any{matchExpr(terms), "[" + strings.Join(rooms, ",") + "]", lo, hi}
	if q.UserID != 0 {
		where += ` AND m.user_id = ?`
		args = append(args, int64(q.UserID))
	}
	from := ` FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid WHERE `
	if err := tx.QueryRowContext(ctx, `SELECT count(*)`+from+where, args...).Scan(&res.Total); err != nil {
		return chat.SearchResult{}, fmt.Errorf("search count: %w", err)
	}
	if offset >= res.Total {
		return res, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT m.id, m.room_id, m.user_id, m.username, m.body, m.created_at, m.nonce, m.edited_at`+
		from+where+` ORDER BY bm25(messages_fts), m.id DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		res.Hits = append(res.Hits, chat.SearchHit{Message: msg, Highlight: chat.Highlight(msg.Body, terms)})
	}
	if err := rows.Err(); err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	next := offset + int64(len(res.Hits))
	if next < res.Total && next <= maxSearchOffset && len(res.Hits) > 0 {
		res.NextCursor = encodeCursor("s", next, upTo)
	}
	return res, nil
}

// matchExpr turns parsed terms into an FTS5 query. Every word is a quoted
// string, so nothing a user types is FTS5 syntax; words hold only letters
// and digits, so they never contain a quote to escape.
func matchExpr(terms []chat.SearchTerm) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteByte('"')
		b.WriteString(strings.Join(t.Words, " "))
		b.WriteByte('"')
		if t.Prefix {
			b.WriteByte('*')
		}
	}
	return b.String()
}

func encodeCursor(kind string, vals ...int64) string {
	s := kind
	for _, v := range vals {
		s += ":" + strconv.FormatInt(v, 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// decodeCursor parses a cursor of kind with n values. Anything else is a
// client's mistake or tampering: EINVALID, never an internal error.
func decodeCursor(c, kind string, n int) ([]int64, error) {
	bad := chat.Errorf(chat.EINVALID, "invalid cursor")
	if len(c) > 100 {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, bad
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != n+1 || parts[0] != kind {
		return nil, bad
	}
	vals := make([]int64, n)
	for i, p := range parts[1:] {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v < 0 {
			return nil, bad
		}
		vals[i] = v
	}
	return vals, nil
}
