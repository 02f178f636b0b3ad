package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"slices"
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
	byID := make(map[chat.ID]*chat.Message, len(msgs))
	for i := range msgs {
		byID[msgs[i].ID] = &msgs[i]
	}
	for chunk := range slices.Chunk(msgs, rowsPerInsert) {
		// RETURNING yields only the rows inserted, not the ignored ones,
		// so only new messages reach the full-text index.
		rows, err := tx.QueryContext(ctx, insertMessages("id, room_id", len(chunk), " RETURNING id"), messageArgs(chunk, false)...)
		if err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		var fresh, docs []any
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("index messages: %w", err)
			}
			m := byID[chat.ID(id)]
			// The words joined by single spaces are what the ascii
			// tokenizer splits back into exactly these words (see the
			// migration).
			fresh = append(fresh, id, strings.Join(chat.SearchWords(m.Body), " "))
			docs = append(docs, id, int64(m.RoomID), int64(m.UserID))
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		if len(fresh) == 0 {
			continue
		}
		q := "INSERT INTO messages_fts (rowid, words) VALUES " + strings.Repeat("(?,?),", len(fresh)/2)
		if _, err := tx.ExecContext(ctx, q[:len(q)-1], fresh...); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		q = "INSERT INTO docs (id, room_id, user_id) VALUES " + strings.Repeat("(?,?,?),", len(docs)/3)
		if _, err := tx.ExecContext(ctx, q[:len(q)-1], docs...); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	return nil
}

// idRange turns a [from, to) time range into an ID range [lo, hi) that
// holds every message of the range. IDs carry milliseconds only, so the
// range is widened to whole milliseconds; timeRange then filters exactly.
func idRange(from, to time.Time) (lo, hi int64) {
	lo, hi = 0, math.MaxInt64
	if !from.IsZero() {
		lo = int64(chat.MinIDAt(from))
	}
	if !to.IsZero() {
		hi = int64(chat.MinIDAt(to.Add(time.Millisecond)))
	}
	return lo, hi
}

// timeRange is [from, to) in the unix nanoseconds of created_at.
func timeRange(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixNano()
	}
	if !to.IsZero() {
		hi = to.UnixNano()
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
	tlo, thi := timeRange(q.From, q.To)
	msgs, err := queryMessages(ctx, s.db, `SELECT `+messageCols+` FROM messages
		WHERE room_id = ? AND id >= ? AND id < ? AND created_at >= ? AND created_at < ? ORDER BY id LIMIT ?`,
		int64(q.RoomID), lo, hi, tlo, thi, limit+1)
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
	rooms := uniqueIDs(q.RoomIDs)
	ids := make([]string, len(rooms))
	for i, id := range rooms {
		ids[i] = strconv.FormatInt(int64(id), 10)
	}
	// The room list goes in as one JSON array parameter, so any number of
	// rooms is one bound value and never SQL text. Each match is checked in
	// docs (see migration 0002); room and user tokens inside the full-text
	// index were measured slower, since FTS5 steps every branch of an OR of
	// rooms for each match.
	from := ` FROM messages_fts JOIN docs m ON m.id = messages_fts.rowid
		WHERE messages_fts MATCH ? AND messages_fts.rowid >= ? AND messages_fts.rowid < ?
		AND m.room_id IN (SELECT value FROM json_each(?))`
	args := []any{matchExpr(terms), lo, hi, "[" + strings.Join(ids, ",") + "]"}
	if q.UserID != 0 {
		from += ` AND m.user_id = ?`
		args = append(args, int64(q.UserID))
	}
	if !q.From.IsZero() || !q.To.IsZero() {
		// The ID range is whole milliseconds; the exact bounds are on
		// created_at, read only for matches inside that range.
		tlo, thi := timeRange(q.From, q.To)
		from += ` AND EXISTS (SELECT 1 FROM messages x WHERE x.id = m.id AND x.created_at >= ? AND x.created_at < ?)`
		args = append(args, tlo, thi)
	}
	// Rank IDs alone and read only the page's messages, so the sort does not
	// carry every matching body. The matches are gathered once (the CTE),
	// then counted and ranked from memory: a second pass over the index
	// for the count doubled the cost, and a window function for it defeated
	// the top-N sort.
	rows, err := tx.QueryContext(ctx, `WITH hits AS MATERIALIZED (SELECT messages_fts.rowid AS id, bm25(messages_fts) AS score`+from+`)
		SELECT id, (SELECT count(*) FROM hits) FROM hits ORDER BY score, id DESC LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	var page []string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id, &res.Total); err != nil {
			rows.Close()
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		page = append(page, strconv.FormatInt(id, 10))
	}
	if err := rows.Close(); err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	if err := rows.Err(); err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	if len(page) == 0 {
		// Past the last page the window had no row to report on.
		if offset > 0 {
			if err := tx.QueryRowContext(ctx, `SELECT count(*)`+from, args...).Scan(&res.Total); err != nil {
				return chat.SearchResult{}, fmt.Errorf("search count: %w", err)
			}
		}
		return res, nil
	}
	msgs, err := queryMessagesTx(ctx, tx, `SELECT `+messageCols+` FROM messages WHERE id IN (SELECT value FROM json_each(?))`,
		"["+strings.Join(page, ",")+"]")
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	byID := make(map[string]chat.Message, len(msgs))
	for _, m := range msgs {
		byID[m.ID.String()] = m
	}
	for _, id := range page {
		m, ok := byID[id]
		if !ok {
			continue
		}
		res.Hits = append(res.Hits, chat.SearchHit{Message: m, Highlight: chat.Highlight(m.Body, terms)})
	}
	next := offset + int64(len(page))
	if next < res.Total && next <= maxSearchOffset && len(page) > 0 {
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

func uniqueIDs(ids []chat.ID) []chat.ID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
