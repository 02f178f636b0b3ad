package redis

import (
	"bytes"
	"cmp"
	"container/heap"
	"slices"
	"sync"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// recentTable holds the rooms' recent windows of the embedded cache, in
// process, instead of one miniredis sorted set per room. With miniredis,
// every ingest batch cost a ZADD per room (the message JSON built, sent
// through go-redis and RESP, parsed under miniredis's global lock, kept as
// a map that miniredis sorts on every read), a trim every RecentPerRoom/8
// adds and an EXPIRE now and then: most of the embedded cache's CPU per
// send. Here an add is an append to a slice under one lock, and a read is
// a binary search and a copy, with no JSON either way.
//
// A window is a slice of entries sorted as the sorted set's members were:
// by ID (a member starts with the zero-padded ID; IDs are positive, so
// that is numeric order), and, for entries with the same ID, by the bytes
// of their JSON. The same message added twice is one entry, as the same
// member added twice is one member. The same ID with different JSON (which
// ingest never produces: an ID is given once, and a retried message is
// re-added exactly as stored) would be two members in Redis, so it is two
// entries here too, in JSON order; that is only worked out when an added
// ID is already in the window, so the usual add never builds a JSON. (The
// JSON compared is that of the stored value: two messages with the same ID
// whose bodies differ only in invalid UTF-8 vs U+FFFD are two members in
// Redis that read back alike, and one entry here.)
//
// Reads return what the sorted-set reads returned: oldest first, a new
// non-nil slice (empty for an unknown or expired room) of copies that
// share nothing mutable with the table. One deliberate difference:
// RecentAfter(room, math.MaxInt64) is empty here, where the Redis path's
// after+1 overflows and returns the whole window.
//
// Trimming is exact: after every add a window holds the newest
// RecentPerRoom entries (the Redis path keeps up to RecentPerRoom/8 more
// between its amortized trims, which readers cannot tell apart). Entries
// are kept in buf[head:]: a trim clears the oldest and moves head, and an
// append that finds buf full either moves the live entries back to the
// front (when at least half of buf is trimmed space) or grows buf, so a
// full window's buf stays within about twice RecentPerRoom and never grows
// for good.
//
// Expiry: a window goes recentT after its last add (with Redis, recentT
// after its last TTL renewal, which happens at least every recentT/4 of
// adds: so between 3/4 recentT and recentT after its last add). An expired
// window reads as empty at once, and is removed by the expiry tracker's
// sweeper (expiry.also) within about a second, on the tracker's clock.
type recentTable struct {
	// now is the clock: the expiry tracker's (expiry.clock), so tests
	// move both with one fake clock. Never called with mu held.
	now  func() time.Time
	base time.Time
	n    int   // RecentPerRoom
	ttl  int64 // recentT in nanoseconds

	mu    sync.Mutex
	rooms map[chat.ID]*recentWindow
	peak  int // len(rooms)'s high-water mark since rooms was last rebuilt
	// exp holds one entry per room in rooms, at or before its deadline.
	// An add only moves the window's own deadline; the sweep that pops
	// an entry whose window has a later deadline pushes it again.
	exp recentHeap
}

type recentWindow struct {
	buf  []recentEntry // the window is buf[head:], in member order
	head int
	at   int64 // deadline, nanoseconds since recentTable.base
}

type recentEntry struct {
	// msg is the message as reading it back from Redis gave it (see
	// canonicalMessage), or as it was added when that would not decode.
	msg chat.Message
	// unreadable: msg did not survive the JSON round trip. Such an entry
	// holds a place in the window as its member did, but reads skip it,
	// as decodeRecent skips a member that does not decode.
	unreadable bool
}

// recentShrinkMin is the room count below which rooms is never rebuilt.
const recentShrinkMin = 1024

// recentMinCap is the capacity a new window's buf starts with.
const recentMinCap = 8

func newRecentTable(now func() time.Time, n int, ttl time.Duration) *recentTable {
	return &recentTable{now: now, base: now(), n: n, ttl: int64(ttl), rooms: map[chat.ID]*recentWindow{}}
}

func (t *recentTable) since(now time.Time) int64 { return int64(now.Sub(t.base)) }

// add is AddRecent on the table.
func (t *recentTable) add(msgs []chat.Message) {
	now := t.since(t.now())
	// Outside the lock: the JSON round trip it stands for was too.
	canon := make([]recentEntry, len(msgs))
	for i, m := range msgs {
		c, ok := canonicalMessage(m)
		if !ok {
			c = ownCopy(m)
		}
		canon[i] = recentEntry{msg: c, unreadable: !ok}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var w *recentWindow
	room := chat.ID(0)
	for i := range canon {
		e := &canon[i]
		if w == nil || e.msg.RoomID != room {
			room = e.msg.RoomID
			w = t.window(room, now)
		}
		w.insert(e, t.n)
	}
	if n := len(t.rooms); n > t.peak {
		t.peak = n
	}
}

// window returns room's window for an add at now, created or emptied if
// it had expired, with its deadline moved to now+ttl. Called with mu held.
func (t *recentTable) window(room chat.ID, now int64) *recentWindow {
	w := t.rooms[room]
	switch {
	case w == nil:
		w = &recentWindow{}
		t.rooms[room] = w
		heap.Push(&t.exp, recentDeadline{room: room, at: now + t.ttl})
	case w.at <= now: // expired, not yet swept: starts over
		clear(w.buf)
		w.buf, w.head = w.buf[:0], 0
	}
	w.at = now + t.ttl
	return w
}

// insert adds e to the window and trims it to its newest n entries.
func (w *recentWindow) insert(e *recentEntry, n int) {
	live := w.buf[w.head:]
	id := e.msg.ID
	var at int
	switch {
	case len(live) == 0 || id > live[len(live)-1].msg.ID:
		at = len(live) // the usual case: newer than the window
	case len(live) >= n && id < live[0].msg.ID:
		return // older than a full window: trimmed at once
	default:
		at, _ = slices.BinarySearchFunc(live, id, func(x recentEntry, id chat.ID) int { return cmp.Compare(x.msg.ID, id) })
		if at < len(live) && live[at].msg.ID == id {
			var dup bool
			if at, dup = sameID(live, at, e); dup {
				return
			}
		}
	}
	if len(w.buf) == cap(w.buf) {
		w.makeRoom()
		live = w.buf[w.head:]
	}
	w.buf = append(w.buf, recentEntry{})
	live = w.buf[w.head:]
	copy(live[at+1:], live[at:])
	live[at] = *e
	if over := len(live) - n; over > 0 {
		clear(live[:over]) // drop the strings for the GC
		w.head += over
	}
}

// sameID handles an add of e when live[at:] starts with entries of e's ID:
// it reports whether one is the same member (the same JSON), else returns
// where e goes among them (their JSON order, as Redis orders members with
// one padded ID).
func sameID(live []recentEntry, at int, e *recentEntry) (int, bool) {
	b := e.msg.JSON()
	for ; at < len(live) && live[at].msg.ID == e.msg.ID; at++ {
		switch c := bytes.Compare(live[at].msg.JSON(), b); {
		case c == 0:
			return at, true
		case c > 0:
			return at, false
		}
	}
	return at, false
}

// makeRoom makes cap(w.buf) > len(w.buf), moving the window to the front
// of buf when at least half of it is trimmed space, else into a buf twice
// the window's size.
func (w *recentWindow) makeRoom() {
	live := len(w.buf) - w.head
	if w.head > 0 && w.head >= cap(w.buf)/2 {
		copy(w.buf, w.buf[w.head:])
		clear(w.buf[live:])
		w.buf, w.head = w.buf[:live], 0
		return
	}
	buf := make([]recentEntry, live, max(recentMinCap, 2*live))
	copy(buf, w.buf[w.head:])
	w.buf, w.head = buf, 0
}

// live returns room's window at now, nil if it has none or it expired.
// Called with mu held.
func (t *recentTable) live(room chat.ID, now int64) []recentEntry {
	w := t.rooms[room]
	if w == nil || w.at <= now {
		return nil
	}
	return w.buf[w.head:]
}

// after is RecentAfter on the table.
func (t *recentTable) after(room, after chat.ID) []chat.Message {
	now := t.since(t.now())
	t.mu.Lock()
	live := t.live(room, now)
	i, _ := slices.BinarySearchFunc(live, after, func(x recentEntry, id chat.ID) int {
		if x.msg.ID <= id {
			return -1
		}
		return 1
	})
	out := collect(live[i:])
	t.mu.Unlock()
	return ownTimes(out)
}

// before is RecentBefore on the table: limit <= 0 is no limit, as go-redis
// then sends no LIMIT.
func (t *recentTable) before(room, before chat.ID, limit int) []chat.Message {
	now := t.since(t.now())
	t.mu.Lock()
	live := t.live(room, now)
	if before > 0 {
		i, _ := slices.BinarySearchFunc(live, before, func(x recentEntry, id chat.ID) int { return cmp.Compare(x.msg.ID, id) })
		live = live[:i]
	}
	if limit > 0 && len(live) > limit {
		live = live[len(live)-limit:]
	}
	out := collect(live)
	t.mu.Unlock()
	return ownTimes(out)
}

// collect copies the readable entries' messages, in order.
func collect(live []recentEntry) []chat.Message {
	out := make([]chat.Message, 0, len(live))
	for i := range live {
		if !live[i].unreadable {
			out = append(out, live[i].msg)
		}
	}
	return out
}

// ownTimes gives every message of out its own EditedAt (ownCopy), so the
// caller shares nothing mutable with the table. Without the lock: the
// table never writes through an EditedAt it holds.
func ownTimes(out []chat.Message) []chat.Message {
	for i := range out {
		out[i] = ownCopy(out[i])
	}
	return out
}

// sweep removes the windows whose deadline has passed and returns how many
// it removed. It releases mu every sweepBatch deadlines, and rebuilds the
// room map once it holds under a quarter of its peak.
func (t *recentTable) sweep() int {
	now := t.since(t.now())
	n, budget := 0, sweepBatch
	t.mu.Lock()
	for len(t.exp) > 0 && t.exp[0].at <= now {
		d := heap.Pop(&t.exp).(recentDeadline)
		if w, ok := t.rooms[d.room]; ok {
			if w.at <= now {
				delete(t.rooms, d.room)
				n++
			} else { // renewed since: check again at its deadline
				heap.Push(&t.exp, recentDeadline{room: d.room, at: w.at})
			}
		}
		if budget--; budget == 0 {
			t.mu.Unlock()
			t.mu.Lock()
			budget = sweepBatch
		}
	}
	t.rooms = shrunk(t.rooms, &t.peak, recentShrinkMin)
	t.mu.Unlock()
	return n
}

// len returns how many windows the table holds, expired or not.
func (t *recentTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rooms)
}

type recentDeadline struct {
	room chat.ID
	at   int64
}

// recentHeap is a min-heap of deadlines (container/heap).
type recentHeap []recentDeadline

func (h recentHeap) Len() int           { return len(h) }
func (h recentHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h recentHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *recentHeap) Push(v any)        { *h = append(*h, v.(recentDeadline)) }
func (h *recentHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// queued returns how many deadlines the heap holds.
func (t *recentTable) queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.exp)
}
