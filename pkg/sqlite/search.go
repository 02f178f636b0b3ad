package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/chatd/chatd/pkg/chat"
)

// rankWindow is how many of the newest matches search ranks by relevance.
// Ranking every match made a common word cost a scan of all its matches
// with a bm25 score each (up to seconds over a million messages); in chat
// the newest matches are also the likeliest wanted. A query with at most
// rankWindow matches is ranked whole, best first; beyond the window the
// older matches follow, newest first.
const rankWindow = 1000

// roomsPerQuery bounds the rooms one full-text query ORs together (the
// rooms asked for, or those left out): each is one more term per query
// word, and FTS5 opens every term in every segment of the index and steps
// every branch of an OR for each match. Beyond it, search matches all rooms
// and checks each match's room in docs.
var roomsPerQuery = 64

// Searches that would OR more than fewRooms rooms' words first read the
// matches in all rooms, up to fewMatches; when there are fewer, they keep
// those in the rooms asked for, by docs, and need no other query.
var fewRooms, fewMatches = 4, 2000

// Search is the search index of the index and query roles: history by time
// range and full-text search on SQLite FTS5.
type Search struct {
	db *db
	// rooms caches the numbers of rooms that are committed in the rooms
	// table; a number never changes once given.
	mu    sync.Mutex
	rooms map[chat.ID]int64
	// Read statements, prepared once; the query text is a parameter.
	// Indexed [docs filter][exact time filter].
	// count counts matches up to :cap (at most chat.MaxSearchTotal+1):
	// counting every match of a common word cost hundreds of milliseconds.
	count, tail [2][2]*sql.Stmt
	insert      insertStmts
	insertFTS   *sql.Stmt
	insertDocs  insertStmts
	// rc answers the room checks of many-room searches from memory.
	rc *roomCache
}

var _ chat.SearchIndex = (*Search)(nil)

func init() {
	// The migration that builds the room words calls these, so they must
	// exist on every connection.
	sqlite.MustRegisterDeterministicScalarFunction("chatd_search_words", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		return strings.Join(chat.SearchWords(textArg(args[0])), " "), nil
	})
	sqlite.MustRegisterDeterministicScalarFunction("chatd_room_words", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		n, _ := args[0].(int64)
		return roomWords(n, chat.SearchWords(textArg(args[1]))), nil
	})
}

func textArg(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// roomWords prefixes every word by the room number n and "x" (see
// migration 0003).
func roomWords(n int64, words []string) string {
	p := strconv.FormatInt(n, 10) + "x"
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
		b.WriteString(w)
	}
	return b.String()
}

const ftsFrom = ` FROM search_fts WHERE search_fts MATCH :match AND search_fts.rowid >= :lo AND search_fts.rowid < :hi`

// docsFilter keeps the matches in the rooms of the JSON array :rooms: by
// the room cache (chatd_room_in, the rooms registered under :set), and in
// docs for a match the cache does not hold (coalesce evaluates its second
// argument only then).
const docsFilter = ` AND coalesce(chatd_room_in(:set, search_fts.rowid),
	EXISTS (SELECT 1 FROM docs d WHERE d.id = search_fts.rowid AND d.room_id IN (SELECT value FROM json_each(:rooms))))`

// exactTime checks created_at for matches whose ID millisecond is in the
// range; only queries with a time range use it.
const exactTime = ` AND EXISTS (SELECT 1 FROM messages x WHERE x.id = search_fts.rowid AND x.created_at >= :tlo AND x.created_at < :thi)`

// OpenSearch opens the search database at path, creating and migrating it as
// needed.
func OpenSearch(ctx context.Context, path string, log *slog.Logger) (*Search, error) {
	d, err := openDB(ctx, path, "search", false, log)
	if err != nil {
		return nil, err
	}
	s := &Search{db: d, rooms: map[chat.ID]int64{}, rc: newRoomCache(roomCacheMax, d.log)}
	if s.insert, err = d.prepareInserts(ctx, func(n int) string { return insertMessages("id, room_id", n, " RETURNING id") }); err != nil {
		d.close()
		return nil, fmt.Errorf("open search: %w", err)
	}
	// The whole batch is one statement: FTS5 writes its pending terms
	// out as a new segment at every statement of a transaction, so a
	// statement per chunk made several small segments per batch, each
	// costing merges and every later search a lookup per term.
	if s.insertFTS, err = d.w.PrepareContext(ctx, `INSERT INTO search_fts (rowid, words, room_words, author)
		SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)`); err != nil {
		d.close()
		return nil, fmt.Errorf("open search: %w", err)
	}
	d.stmts = append(d.stmts, s.insertFTS)
	if s.insertDocs, err = d.prepareInserts(ctx, func(n int) string {
		return "INSERT INTO docs (id, room_id) VALUES " + strings.TrimSuffix(strings.Repeat("(?,?),", n), ",")
	}); err != nil {
		d.close()
		return nil, fmt.Errorf("open search: %w", err)
	}
	for i, docs := range []string{"", docsFilter} {
		for j, time := range []string{"", exactTime} {
			where := ftsFrom + docs + time
			for _, p := range []struct {
				st  **sql.Stmt
				sql string
			}{
				{&s.count[i][j], `SELECT count(*) FROM (SELECT 1` + where + ` LIMIT :cap)`},
				{&s.tail[i][j], `SELECT search_fts.rowid` + where + ` ORDER BY search_fts.rowid DESC LIMIT :lim OFFSET :off`},
			} {
				if *p.st, err = d.r.PrepareContext(ctx, p.sql); err != nil {
					s.Close()
					return nil, fmt.Errorf("open search: %w", err)
				}
			}
		}
	}
	s.rc.load(d.r)
	return s, nil
}

// Close closes the database.
func (s *Search) Close() error {
	s.rc.close()
	var errs []error
	for _, sts := range [][2][2]*sql.Stmt{s.count, s.tail} {
		for _, st := range slices.Concat(sts[0][:], sts[1][:]) {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
	}
	return errors.Join(append(errs, s.db.close())...)
}

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
	fresh := make([]*chat.Message, 0, len(msgs))
	rest := msgs
	for _, n := range chunks(len(msgs)) {
		// RETURNING yields only the rows inserted, not the ignored ones,
		// so only new messages reach the full-text index.
		rows, err := s.insert.in(ctx, tx, n).QueryContext(ctx, messageArgs(rest[:n], false)...)
		if err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		rest = rest[n:]
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("index messages: %w", err)
			}
			fresh = append(fresh, byID[chat.ID(id)])
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	nums, added, err := s.roomNumbers(ctx, tx, fresh)
	if err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	left := fresh
	for _, n := range chunks(len(fresh)) {
		args := make([]any, 0, 2*n)
		for _, m := range left[:n] {
			args = append(args, int64(m.ID), int64(m.RoomID))
		}
		if _, err := s.insertDocs.in(ctx, tx, n).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		left = left[n:]
	}
	// The full-text rows go last: FTS5 writes its pending terms out as a
	// segment whenever a later statement of the transaction begins, so
	// any statement after this one would cost a segment more per batch.
	rows := make([][4]any, len(fresh))
	for i, m := range fresh {
		// The words joined by single spaces are what the ascii tokenizer
		// splits back into exactly these words.
		words := chat.SearchWords(m.Body)
		rows[i] = [4]any{int64(m.ID), strings.Join(words, " "), roomWords(nums[m.RoomID], words), int64(m.UserID)}
	}
	text, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	if _, err := tx.StmtContext(ctx, s.insertFTS).ExecContext(ctx, string(text)); err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index messages: %w", err)
	}
	if len(added) > 0 {
		s.mu.Lock()
		maps.Copy(s.rooms, added)
		s.mu.Unlock()
	}
	entries := make([]roomEntry, len(fresh))
	for i, m := range fresh {
		entries[i] = roomEntry{int64(m.ID), uint32(nums[m.RoomID])}
	}
	s.rc.add(entries)
	return nil
}

// roomNumbers returns the numbers of the rooms of msgs, numbering new rooms
// in tx; added are those not cached yet, to cache once tx commits.
func (s *Search) roomNumbers(ctx context.Context, tx *sql.Tx, msgs []*chat.Message) (nums, added map[chat.ID]int64, err error) {
	nums = map[chat.ID]int64{}
	var missing []string
	s.mu.Lock()
	for _, m := range msgs {
		if _, ok := nums[m.RoomID]; ok {
			continue
		}
		n, ok := s.rooms[m.RoomID]
		nums[m.RoomID] = n
		if !ok {
			missing = append(missing, m.RoomID.String())
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return nums, nil, nil
	}
	list := "[" + strings.Join(missing, ",") + "]"
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO rooms (room_id) SELECT value FROM json_each(?) ORDER BY value`, list); err != nil {
		return nil, nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT room_id, n FROM rooms WHERE room_id IN (SELECT value FROM json_each(?))`, list)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	added = map[chat.ID]int64{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, nil, err
		}
		nums[chat.ID(id)], added[chat.ID(id)] = n, n
	}
	return nums, added, rows.Err()
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

// Search runs a full-text query: every term must match. The newest
// rankWindow matches come first, best match first (see rank) and newest
// first among equals, then any older matches, newest first. The cursor holds the
// offset of the next page and the highest ID at the first page, so messages
// indexed while a client pages neither shift the pages nor show up twice.
// Total counts at most chat.MaxSearchTotal matches (TotalGte beyond), and
// paging stops there too.
//
// The rooms filter is part of the full-text query, in one of three shapes
// (see migration 0003): the words of the few rooms asked for; all words
// less those of the few rooms not asked for; all words when every room is
// asked for. With many rooms on both sides, each match of all words is
// checked against the rooms in docs.
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
	// The first page's count, carried by the cursor: later pages show
	// the same total without counting again (-1: count).
	counted := int64(-1)
	res := chat.SearchResult{Hits: []chat.SearchHit{}, TotalRelation: chat.TotalEq}
	if q.Cursor != "" {
		vals, err := decodeCursor(q.Cursor, "s", 4)
		if err != nil {
			// A cursor of an older version, without the count.
			if vals, err = decodeCursor(q.Cursor, "s", 2); err != nil {
				return chat.SearchResult{}, err
			}
			vals = append(vals, -1, 0)
		}
		offset, upTo = vals[0], vals[1]
		if offset < 0 || offset > chat.MaxSearchTotal || vals[3] > 1 || vals[2] > chat.MaxSearchTotal {
			return chat.SearchResult{}, chat.Errorf(chat.EINVALID, "invalid cursor")
		}
		counted = vals[2]
		if vals[3] == 1 {
			res.TotalRelation = chat.TotalGte
		}
	}
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
	plan, err := s.matchExpr(ctx, tx, terms, q)
	match, rooms, probe := plan.expr, plan.docsRooms, plan.probe
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	lo, hi := idRange(q.From, q.To)
	hi = min(hi, upTo+1)
	args := []any{nil, sql.Named("lo", lo), sql.Named("hi", hi)}
	filtered, timed := 0, 0
	if rooms != "" {
		set, release := s.rc.register(plan.roomNums)
		defer release()
		args = append(args, sql.Named("rooms", rooms), sql.Named("set", set))
		filtered = 1
	}
	if !q.From.IsZero() || !q.To.IsZero() {
		// The ID range is whole milliseconds; the exact bounds are on
		// created_at, read only for matches inside that range.
		tlo, thi := timeRange(q.From, q.To)
		args = append(args, sql.Named("tlo", tlo), sql.Named("thi", thi))
		timed = 1
	}
	count := tx.StmtContext(ctx, s.count[filtered][timed])
	tail := stmtQuerier{tx.StmtContext(ctx, s.tail[filtered][timed])}

	if match == "" {
		return res, nil
	}
	args[0] = sql.Named("match", match)

	// all is every match, when the probe found them.
	var all []int64
	if probe != "" {
		ids, err := queryInts(ctx, stmtQuerier{tx.StmtContext(ctx, s.tail[0][0])}, "", sql.Named("match", probe),
			sql.Named("lo", lo), sql.Named("hi", hi), sql.Named("lim", fewMatches), sql.Named("off", 0))
		if err != nil {
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		if len(ids) < fewMatches {
			if all, err = s.inRooms(ctx, tx, ids, q); err != nil {
				return chat.SearchResult{}, fmt.Errorf("search: %w", err)
			}
		}
	}
	if all == nil && counted < 0 && plan.perRoom {
		// An OR over many rooms' words: every query opens each room's
		// word in every segment of the index again (~0.3 ms a room), so
		// counting in a second query cost as much as the window. One
		// query reads every match up to the cap instead; past the count
		// of a first page the cursor carries it, so later pages read
		// only their window.
		ids, err := queryInts(ctx, tail, "", append(args, sql.Named("lim", chat.MaxSearchTotal+1), sql.Named("off", 0))...)
		if err != nil {
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		all = ids
		if all == nil {
			all = []int64{}
		}
	}

	// The newest rankWindow matches, and the count.
	var window []int64
	if all != nil {
		window = slices.Clone(all[:min(len(all), rankWindow)])
	} else if window, err = queryInts(ctx, tail, "", append(args, sql.Named("lim", rankWindow), sql.Named("off", 0))...); err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	res.Total = int64(len(window))
	switch {
	case counted >= 0:
		res.Total = counted
	case all != nil:
		res.Total = int64(len(all))
	case len(window) == rankWindow:
		// Only a full window leaves matches to count: those older than
		// its oldest (the window is newest first until ranked), up to
		// the cap.
		countArgs := slices.Clone(args)
		countArgs[2] = sql.Named("hi", window[len(window)-1])
		var older int64
		if err := count.QueryRowContext(ctx, append(countArgs, sql.Named("cap", chat.MaxSearchTotal+1-len(window)))...).Scan(&older); err != nil {
			return chat.SearchResult{}, fmt.Errorf("search count: %w", err)
		}
		res.Total += older
	}
	if res.Total > chat.MaxSearchTotal {
		// The count stopped past the cap: at least that many match.
		res.Total, res.TotalRelation = chat.MaxSearchTotal, chat.TotalGte
	}
	if offset < int64(len(window)) {
		if err := rank(ctx, tx, window, terms); err != nil {
			return chat.SearchResult{}, fmt.Errorf("search rank: %w", err)
		}
	}
	var page []int64
	end := offset + int64(limit)
	page = append(page, window[min(int64(len(window)), offset):min(int64(len(window)), end)]...)
	if start := max(offset, rankWindow); end > start && res.Total > start {
		// Past the window the matches follow newest first.
		if all != nil {
			page = append(page, all[min(int64(len(all)), start):min(int64(len(all)), end)]...)
		} else {
			older, err := queryInts(ctx, tail, "", append(args, sql.Named("lim", end-start), sql.Named("off", start))...)
			if err != nil {
				return chat.SearchResult{}, fmt.Errorf("search: %w", err)
			}
			page = append(page, older...)
		}
	}
	if len(page) == 0 {
		return res, nil
	}
	ids := make([]string, len(page))
	for i, id := range page {
		ids[i] = strconv.FormatInt(id, 10)
	}
	msgs, err := queryMessagesTx(ctx, tx, `SELECT `+messageCols+` FROM messages WHERE id IN (SELECT value FROM json_each(?))`,
		"["+strings.Join(ids, ",")+"]")
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	byID := make(map[chat.ID]chat.Message, len(msgs))
	for _, m := range msgs {
		byID[m.ID] = m
	}
	for _, id := range page {
		m, ok := byID[chat.ID(id)]
		if !ok {
			continue
		}
		res.Hits = append(res.Hits, chat.SearchHit{Message: m, Highlight: chat.Highlight(m.Body, terms)})
	}
	next := offset + int64(len(page))
	if next < res.Total && next <= chat.MaxSearchTotal {
		gte := int64(0)
		if res.TotalRelation == chat.TotalGte {
			gte = 1
		}
		res.NextCursor = encodeCursor("s", next, upTo, res.Total, gte)
	}
	return res, nil
}

// inRooms returns those of ids, matches in all rooms, that are in q's
// rooms and time range, newest first.
func (s *Search) inRooms(ctx context.Context, tx *sql.Tx, ids []int64, q chat.SearchQuery) ([]int64, error) {
	if len(ids) == 0 {
		return []int64{}, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	rooms := make([]string, len(q.RoomIDs))
	for i, id := range q.RoomIDs {
		rooms[i] = strconv.FormatInt(int64(id), 10)
	}
	query := `SELECT d.id FROM docs d WHERE d.id IN (SELECT value FROM json_each(?1))
		AND d.room_id IN (SELECT value FROM json_each(?2))`
	args := []any{"[" + strings.Join(list, ",") + "]", "[" + strings.Join(rooms, ",") + "]"}
	if !q.From.IsZero() || !q.To.IsZero() {
		tlo, thi := timeRange(q.From, q.To)
		query += ` AND EXISTS (SELECT 1 FROM messages x WHERE x.id = d.id AND x.created_at >= ?3 AND x.created_at < ?4)`
		args = append(args, tlo, thi)
	}
	out, err := queryInts(ctx, tx, query+` ORDER BY d.id DESC`, args...)
	if out == nil && err == nil {
		out = []int64{}
	}
	return out, err
}

// BM25's parameters, as FTS5's bm25 has them.
const bm25K1, bm25B = 1.2, 0.75

// rank orders ids, the newest matches, best match first and newest first
// among equals. The score is BM25 on the message's words, with the average
// length taken over ids and every term weighted alike: FTS5's own bm25 also
// weighs each term by its rarity, which it learns by reading every match of
// every term (and of every room's term), the very scan the window avoids.
func rank(ctx context.Context, tx *sql.Tx, ids []int64, terms []chat.SearchTerm) error {
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, body FROM messages WHERE id IN (SELECT value FROM json_each(?))`, "["+strings.Join(list, ",")+"]")
	if err != nil {
		return err
	}
	defer rows.Close()
	type doc struct {
		tf     []int
		length int
	}
	docs := make(map[int64]doc, len(ids))
	total := 0
	var spans [][2]int
	for rows.Next() {
		var id int64
		var body string
		if err := rows.Scan(&id, &body); err != nil {
			return err
		}
		// CountTerms matches as the index and Highlight do, comparing
		// words in place: making a string of every word was a third of
		// ranking's time and half of a search's allocations.
		d := doc{tf: make([]int, len(terms))}
		spans = chat.CountTerms(body, terms, d.tf, spans)
		d.length = len(spans)
		docs[id] = d
		total += d.length
	}
	if err := rows.Err(); err != nil {
		return err
	}
	avg := max(1, float64(total)/float64(max(1, len(docs))))
	scores := make(map[int64]float64, len(docs))
	for id, d := range docs {
		var s float64
		for _, tf := range d.tf {
			f := float64(tf)
			s += f * (bm25K1 + 1) / (f + bm25K1*(1-bm25B+bm25B*float64(d.length)/avg))
		}
		scores[id] = s
	}
	slices.SortStableFunc(ids, func(a, b int64) int {
		if c := cmp.Compare(scores[b], scores[a]); c != 0 {
			return c
		}
		return cmp.Compare(b, a)
	})
	return nil
}

// matchPlan is how Search finds the matches of a query in its rooms.
type matchPlan struct {
	expr      string  // the FTS5 query; "" if no room asked for has a message
	docsRooms string  // the rooms as a JSON array when each match must also be checked in docs
	roomNums  []int64 // with docsRooms: the same rooms' numbers, for the room cache
	probe     string  // the query in all rooms, when Search should first try checking those matches in docs
	perRoom   bool    // expr ORs the words of each of many rooms, which every query opens again
}

// matchExpr plans the FTS5 query for terms in q's rooms by q's author.
func (s *Search) matchExpr(ctx context.Context, tx *sql.Tx, terms []chat.SearchTerm, q chat.SearchQuery) (matchPlan, error) {
	rooms := uniqueIDs(q.RoomIDs)
	ids := make([]string, len(rooms))
	for i, id := range rooms {
		ids[i] = strconv.FormatInt(int64(id), 10)
	}
	// The room list goes in as one JSON array parameter, so any number of
	// rooms is one bound value and never SQL text.
	list := "[" + strings.Join(ids, ",") + "]"
	in, err := queryInts(ctx, tx, `SELECT n FROM rooms WHERE room_id IN (SELECT value FROM json_each(?)) ORDER BY n`, list)
	if err != nil || len(in) == 0 {
		return matchPlan{}, err
	}
	var all int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM rooms`).Scan(&all); err != nil {
		return matchPlan{}, err
	}
	author := ""
	if q.UserID != 0 {
		author = ` AND author : "` + strconv.FormatInt(int64(q.UserID), 10) + `"`
	}
	words := `words : (` + wordsExpr(terms) + `)` + author
	others := int(all) - len(in)
	var probe string
	if others > 0 && min(len(in), others) > fewRooms && len(terms) == 1 && len(terms[0].Words) == 1 && !terms[0].Prefix {
		// A room's word costs as much to open as walking a few hundred
		// matches: Search first tries the matches in all rooms. Only for
		// one plain word, whose matches are one list to walk; a phrase,
		// several words or a prefix merge several, which costs more than
		// opening the rooms' words.
		probe = words
	}
	switch {
	case others == 0:
		return matchPlan{expr: words, probe: probe}, nil
	case len(in) <= roomsPerQuery:
		e := roomsExpr(in, terms)
		if author != "" {
			e = `(` + e + `)` + author
		}
		return matchPlan{expr: e, probe: probe, perRoom: true}, nil
	case others <= roomsPerQuery:
		out, err := queryInts(ctx, tx, `SELECT n FROM rooms WHERE room_id NOT IN (SELECT value FROM json_each(?)) ORDER BY n`, list)
		if err != nil {
			return matchPlan{}, err
		}
		return matchPlan{expr: `(` + words + `) NOT ` + roomsExpr(out, terms), probe: probe, perRoom: true}, nil
	}
	return matchPlan{expr: words, docsRooms: list, roomNums: in}, nil
}

// roomsExpr matches terms in the words of any of rooms.
func roomsExpr(rooms []int64, terms []chat.SearchTerm) string {
	var b strings.Builder
	b.WriteString(`room_words : (`)
	for i, n := range rooms {
		if i > 0 {
			b.WriteString(" OR ")
		}
		p := strconv.FormatInt(n, 10) + "x"
		b.WriteByte('(')
		for j, t := range terms {
			if j > 0 {
				b.WriteString(" AND ")
			}
			b.WriteByte('"')
			for k, w := range t.Words {
				if k > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(p)
				b.WriteString(w)
			}
			b.WriteByte('"')
			if t.Prefix {
				b.WriteByte('*')
			}
		}
		b.WriteByte(')')
	}
	b.WriteByte(')')
	return b.String()
}

func queryInts(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// wordsExpr turns parsed terms into an FTS5 query. Every word is a quoted
// string, so nothing a user types is FTS5 syntax; words hold only letters
// and digits, so they never contain a quote to escape.
func wordsExpr(terms []chat.SearchTerm) string {
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
