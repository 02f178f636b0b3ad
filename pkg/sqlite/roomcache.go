package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"

	"github.com/chatd/chatd/pkg/prio"
)

// roomCache maps indexed message IDs to their room numbers in memory, for
// the one search shape that must check every match's room: a word in many
// rooms that also leaves many out (matchPlan.docsRooms). In SQL that check
// is a lookup in docs and one in the set of rooms, about 1.5 µs a match in
// the Go translation of SQLite; counting a common word over 500 of 1,000
// rooms checks some 20,000 matches. Through chatd_room_in it is a binary
// search here, about 0.1 µs with the call.
//
// The cache is only ever an answer or no answer: a message's room never
// changes, so an ID it holds is answered exactly, and an ID it does not
// hold (not loaded yet, written by another process, older than the newest
// roomCacheMax) falls back to docs in the same query. So the cache may be
// cold, partial or stale without any search changing its result.
type roomCache struct {
	mu   sync.Mutex // writers: add and the loader
	snap atomic.Pointer[roomSnap]
	max  int
	log  *slog.Logger

	stop func()        // ends the loader
	done chan struct{} // closed when the loader returns
}

// roomCacheMax bounds the messages the cache holds, the newest first:
// 12 bytes each, so 24 MB at the cap. Older matches are checked in docs.
const roomCacheMax = 2 << 20

// lateMax is how many out-of-order IDs wait in roomSnap.late before they
// are merged into ids.
const lateMax = 4096

// roomSnap is one immutable state of the cache: readers take it without a
// lock. A writer never changes an element a published snapshot can see: it
// appends past their lengths or builds new arrays.
type roomSnap struct {
	ids   []int64  // ascending
	rooms []uint32 // rooms[i]: the room number of ids[i]
	// late holds IDs added below the newest of ids (log order is not
	// always ID order), ascending, until lateMax of them are merged in.
	late      []int64
	lateRooms []uint32
}

// room returns the room number of message id, if the snapshot holds it.
func (s *roomSnap) room(id int64) (uint32, bool) {
	if i, ok := slices.BinarySearch(s.ids, id); ok {
		return s.rooms[i], true
	}
	if i, ok := slices.BinarySearch(s.late, id); ok {
		return s.lateRooms[i], true
	}
	return 0, false
}

func (s *roomSnap) len() int { return len(s.ids) + len(s.late) }

type roomEntry struct {
	id   int64
	room uint32
}

func newRoomCache(max int, log *slog.Logger) *roomCache {
	c := &roomCache{max: max, log: log, stop: func() {}}
	c.snap.Store(&roomSnap{})
	return c
}

// add records entries (in any order).
func (c *roomCache) add(entries []roomEntry) {
	if len(entries) == 0 {
		return
	}
	slices.SortFunc(entries, func(a, b roomEntry) int { return cmp.Compare(a.id, b.id) })
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()
	next := *old
	last := int64(-1 << 63)
	if n := len(old.ids); n > 0 {
		last = old.ids[n-1]
	}
	var late []roomEntry
	for _, e := range entries {
		if e.id > last {
			next.ids = append(next.ids, e.id)
			next.rooms = append(next.rooms, e.room)
			last = e.id
		} else {
			late = append(late, e)
		}
	}
	if len(late) > 0 {
		next.late, next.lateRooms = mergeRooms(old.late, old.lateRooms, late)
	}
	if len(next.late) > lateMax {
		next.ids, next.rooms = mergeRooms(next.ids, next.rooms, zipRooms(next.late, next.lateRooms))
		next.late, next.lateRooms = nil, nil
	}
	next.trim(c.max)
	c.snap.Store(&next)
}

// trim drops the oldest IDs beyond max.
func (s *roomSnap) trim(max int) {
	if over := len(s.ids) - max; over > 0 {
		s.ids, s.rooms = s.ids[over:], s.rooms[over:]
	}
	if len(s.late) > 0 && len(s.ids) > 0 {
		// Late IDs older than everything kept go with them.
		k, _ := slices.BinarySearch(s.late, s.ids[0])
		s.late, s.lateRooms = s.late[k:], s.lateRooms[k:]
	}
}

func zipRooms(ids []int64, rooms []uint32) []roomEntry {
	out := make([]roomEntry, len(ids))
	for i := range ids {
		out[i] = roomEntry{ids[i], rooms[i]}
	}
	return out
}

// mergeRooms returns new arrays holding ids/rooms and the sorted entries,
// an ID present in both once.
func mergeRooms(ids []int64, rooms []uint32, entries []roomEntry) ([]int64, []uint32) {
	outIDs := make([]int64, 0, len(ids)+len(entries))
	outRooms := make([]uint32, 0, len(ids)+len(entries))
	i, j := 0, 0
	for i < len(ids) || j < len(entries) {
		switch {
		case j == len(entries) || i < len(ids) && ids[i] < entries[j].id:
			outIDs, outRooms = append(outIDs, ids[i]), append(outRooms, rooms[i])
			i++
		case i == len(ids) || entries[j].id < ids[i]:
			outIDs, outRooms = append(outIDs, entries[j].id), append(outRooms, entries[j].room)
			j++
		default: // the same ID
			outIDs, outRooms = append(outIDs, ids[i]), append(outRooms, rooms[i])
			i++
			j++
		}
	}
	return outIDs, outRooms
}

// load reads the newest max entries of docs in the background, at
// background priority, and merges them with what add recorded meanwhile.
// Until it is done, searches check rooms in docs as before.
func (c *roomCache) load(r *sql.DB) {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		prio.Background() // nothing waits for it
		entries, err := c.read(ctx, r)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("search room cache not loaded; many-room searches check rooms in the database", "err", err)
			}
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		cur := c.snap.Load()
		merged := &roomSnap{}
		merged.ids, merged.rooms = mergeRooms(cur.ids, cur.rooms, entries)
		merged.ids, merged.rooms = mergeRooms(merged.ids, merged.rooms, zipRooms(cur.late, cur.lateRooms))
		merged.trim(c.max)
		c.snap.Store(merged)
		c.log.Debug("search room cache loaded", "messages", merged.len())
	}()
}

func (c *roomCache) read(ctx context.Context, r *sql.DB) ([]roomEntry, error) {
	nums := map[int64]uint32{}
	rows, err := r.QueryContext(ctx, `SELECT room_id, n FROM rooms`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return nil, err
		}
		nums[id] = uint32(n)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	var from int64
	err = r.QueryRowContext(ctx, `SELECT id FROM docs ORDER BY id DESC LIMIT 1 OFFSET ?`, c.max-1).Scan(&from)
	if err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	rows, err = r.QueryContext(ctx, `SELECT id, room_id FROM docs WHERE id >= ? ORDER BY id`, from)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []roomEntry
	for rows.Next() {
		var id, room int64
		if err := rows.Scan(&id, &room); err != nil {
			return nil, err
		}
		n, ok := nums[room]
		if !ok {
			// A room numbered after the rooms were read: docs answers.
			continue
		}
		out = append(out, roomEntry{id, n})
	}
	return out, rows.Err()
}

func (c *roomCache) close() {
	c.stop()
	if c.done != nil {
		<-c.done
	}
}

// roomQuery is one search's room set, with the cache snapshot it was
// registered with, for chatd_room_in.
type roomQuery struct {
	snap *roomSnap
	in   []uint64 // bit n: room number n is asked for
}

var (
	roomQueries  sync.Map // int64 token → *roomQuery
	roomQuerySeq atomic.Int64
)

// register makes the room numbers in known to chatd_room_in under the
// returned token until release is called.
func (c *roomCache) register(in []int64) (token int64, release func()) {
	q := &roomQuery{snap: c.snap.Load()}
	if q.snap.len() == 0 {
		return 0, func() {}
	}
	for _, n := range in {
		if n < 0 {
			continue
		}
		for int(n/64) >= len(q.in) {
			q.in = append(q.in, 0)
		}
		q.in[n/64] |= 1 << (n % 64)
	}
	token = roomQuerySeq.Add(1)
	roomQueries.Store(token, q)
	return token, func() { roomQueries.Delete(token) }
}

// check answers chatd_room_in: 1 or 0 when the snapshot holds id, NULL when
// it does not (the caller then checks docs).
func (q *roomQuery) check(id int64) driver.Value {
	n, ok := q.snap.room(id)
	if !ok {
		return nil
	}
	if w := int(n / 64); w < len(q.in) && q.in[w]&(1<<(n%64)) != 0 {
		return int64(1)
	}
	return int64(0)
}

func init() {
	// chatd_room_in(token, id): whether message id is in one of the rooms
	// registered under token; NULL when the cache cannot say. Not
	// deterministic: the answer depends on the registration.
	sqlite.MustRegisterScalarFunction("chatd_room_in", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		tok, _ := args[0].(int64)
		id, ok := args[1].(int64)
		if !ok || tok == 0 {
			return nil, nil
		}
		q, ok := roomQueries.Load(tok)
		if !ok {
			return nil, nil
		}
		return q.(*roomQuery).check(id), nil
	})
}
