package redis

import (
	"encoding/json"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/chatd/chatd/pkg/chat"
)

// nonceTable holds the nonce claims of the embedded cache, in process,
// instead of one miniredis key per claim. A claim writes a new key per sent
// message, and miniredis keeps a WATCH version for every key ever written,
// even after DEL (see expiry), so claims there leaked ~66 B per message for
// good; they were also about half of the cache's CPU per send (a pipeline
// through go-redis, RESP and miniredis's global lock, plus the JSON of every
// message). Here a claim is a map lookup and insert under one lock per call.
//
// An entry is keyed by (user, nonce), which is what nonceKey encodes (its
// prefix is the Cache's, the same for the whole table, and a user ID has no
// ':'), so the identity of a claim is the same as with Redis, without
// building the key string.
//
// Expiry is a FIFO of deadlines per TTL rather than the expiry tracker's
// heap: a claim's deadline never moves (the first claim wins, a refused one
// keeps it, as SET NX does) and ClaimNonces' ttl is normally one constant,
// so insertion order is deadline order and both the claim and the expiry of
// an entry are O(1), at 32 B of queue per entry instead of a heap entry,
// its pointer and a second map. Deadlines are exact (now+ttl, as Redis's
// PX), on the tracker's clock, measured from base so a wall clock step does
// not reorder them. An entry past its deadline is absent for lookups at
// once, and removed by the tracker's sweeper (expiry.also) within about a
// second.
type nonceTable struct {
	// now is the clock: the expiry tracker's (expiry.clock), so tests
	// move both with one fake clock. Never called with mu held.
	now  func() time.Time
	base time.Time

	mu     sync.Mutex
	m      map[nonceID]nonceEntry
	peak   int // len(m)'s high-water mark since m was last rebuilt
	queues map[time.Duration]*nonceFIFO
	call   uint64 // numbers claim calls, for nonceEntry.call
}

type nonceID struct {
	user  chat.ID
	nonce string
}

type nonceEntry struct {
	// msg is the claiming message as reading it back from Redis gave it
	// (see canonicalMessage).
	msg chat.Message
	at  int64 // deadline, nanoseconds since nonceTable.base
	// call and first say which claim call stored the entry and the index
	// of the message in that call's batch, so a repeat in the same call is
	// answered with that message itself, as ClaimNonces does with Redis.
	call  uint64
	first int32
	// unreadable: msg did not survive the JSON round trip, so a refused
	// claim lets its message be stored, as with Redis (where the stored
	// value would not decode).
	unreadable bool
	// 128 bytes in all: a Go map stores larger values out of line, one
	// allocation per entry.
}

// nonceShrinkMin is the size below which the map is never rebuilt.
const nonceShrinkMin = 4096

func newNonceTable(now func() time.Time) *nonceTable {
	return &nonceTable{now: now, base: now(), m: map[nonceID]nonceEntry{}, queues: map[time.Duration]*nonceFIFO{}}
}

func (t *nonceTable) since(now time.Time) int64 { return int64(now.Sub(t.base)) }

// claim is ClaimNonces on the table: out[i] is nil when msgs[i] may be
// stored (claimed now, or no nonce), a copy of msgs[j] when it repeats
// msgs[j] (j < i, the first with its nonce in msgs), else a copy of the
// live claim's message. ttl must be positive (ingest makes it so): with
// ttl <= 0 a claim is expired as soon as made.
func (t *nonceTable) claim(msgs []chat.Message, ttl time.Duration) []*chat.Message {
	out := make([]*chat.Message, len(msgs))
	now := t.since(t.now())
	at := now + int64(ttl)
	// Outside the lock: the JSON round trip it stands for was too.
	canon := make([]nonceEntry, 0, len(msgs))
	for _, m := range msgs {
		if m.Nonce != "" {
			c, ok := canonicalMessage(m)
			canon = append(canon, nonceEntry{msg: c, at: at, unreadable: !ok})
		}
	}
	if len(canon) == 0 {
		return out
	}
	var refused map[nonceID]int // first refused index per claim, rarely needed
	t.mu.Lock()
	defer t.mu.Unlock()
	t.call++
	var q *nonceFIFO
	k := 0
	for i, m := range msgs {
		if m.Nonce == "" {
			continue
		}
		id := nonceID{user: m.UserID, nonce: m.Nonce}
		e := canon[k]
		k++
		prev, ok := t.m[id]
		switch {
		case !ok || prev.at <= now: // new, or expired and not yet swept
			e.call, e.first = t.call, int32(i)
			t.m[id] = e
			if q == nil {
				q = t.queues[ttl]
				if q == nil {
					q = &nonceFIFO{}
					t.queues[ttl] = q
				}
			}
			q.push(nonceRec{id: id, at: at})
		case prev.call == t.call: // repeat of a message claimed in this call
			first := msgs[prev.first]
			out[i] = &first
		default:
			if j, dup := refused[id]; dup { // repeat of a refused one
				first := msgs[j]
				out[i] = &first
				continue
			}
			if refused == nil {
				refused = map[nonceID]int{}
			}
			refused[id] = i
			if !prev.unreadable {
				m := ownCopy(prev.msg)
				out[i] = &m
			}
		}
	}
	if n := len(t.m); n > t.peak {
		t.peak = n
	}
	return out
}

// ownCopy returns m with its own EditedAt, so it shares nothing mutable
// with the message it was copied from: what a table hands out, and what it
// keeps of what it is given.
func ownCopy(m chat.Message) chat.Message {
	if m.EditedAt != nil {
		edited := *m.EditedAt
		m.EditedAt = &edited
	}
	return m
}

// shrunk returns m, or a copy of it once it holds under a quarter of its
// peak (a high-water mark of len(m), reset here) and that peak is at least
// min: a Go map never gives back the room it grew to, and the copy is at
// most a quarter of the peak. Called with the table's lock held.
func shrunk[K comparable, V any](m map[K]V, peak *int, min int) map[K]V {
	if n := len(m); n > *peak {
		*peak = n
	}
	if len(m) >= *peak/4 || *peak < min {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(c)
	return c
}

// sweep removes the entries whose deadline has passed and returns how many
// it removed. It releases mu every sweepBatch entries, and rebuilds the map
// once it holds under a quarter of its peak, since a Go map never gives
// back the room it grew to (that copies at most a quarter of the peak).
func (t *nonceTable) sweep() int {
	now := t.since(t.now())
	n, budget := 0, sweepBatch
	t.mu.Lock()
	for ttl, q := range t.queues {
		for q.n > 0 && q.front().at <= now {
			r := q.pop()
			// The key may have been claimed again since (expired on
			// lookup before this sweep): only the entry with this
			// deadline goes.
			if e, ok := t.m[r.id]; ok && e.at == r.at {
				delete(t.m, r.id)
				n++
			}
			if budget--; budget == 0 {
				t.mu.Unlock()
				t.mu.Lock()
				budget = sweepBatch
			}
		}
		// Only if q is still the queue for ttl: a sweep running at the
		// same time may have dropped it, and a claim made another.
		if q.n == 0 && t.queues[ttl] == q {
			delete(t.queues, ttl)
		}
	}
	t.m = shrunk(t.m, &t.peak, nonceShrinkMin)
	t.mu.Unlock()
	return n
}

// len returns how many entries the table holds, expired or not.
func (t *nonceTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// queued returns how many deadlines the queues hold.
func (t *nonceTable) queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, q := range t.queues {
		n += q.n
	}
	return n
}

// canonicalMessage returns m as storing it in Redis as JSON and reading it
// back gives it, and false if that would not decode. The JSON keeps every
// field, but times come back in UTC without a monotonic reading, and invalid
// UTF-8 comes back as U+FFFD: when neither kind of string needs that and
// the times format and parse back, the round trip is done without the JSON.
func canonicalMessage(m chat.Message) (chat.Message, bool) {
	if utf8.ValidString(m.Username) && utf8.ValidString(m.Body) && utf8.ValidString(m.Nonce) &&
		jsonTimeOK(m.CreatedAt) && (m.EditedAt == nil || jsonTimeOK(*m.EditedAt)) {
		m.CreatedAt = m.CreatedAt.UTC()
		if m.EditedAt != nil {
			edited := m.EditedAt.UTC()
			m.EditedAt = &edited
		}
		return m, true
	}
	var back chat.Message
	if err := json.Unmarshal(m.JSON(), &back); err != nil {
		return chat.Message{}, false
	}
	return back, true
}

// jsonTimeOK reports whether t formats with chat.TimeFormat to what parses
// back as t (a four-digit year).
func jsonTimeOK(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// nonceFIFO is a ring buffer of deadlines in claim order.
type nonceFIFO struct {
	buf     []nonceRec // len is 0 or a power of two
	head, n int
}

type nonceRec struct {
	id nonceID
	at int64
}

const nonceFIFOMin = 64

func (q *nonceFIFO) front() *nonceRec { return &q.buf[q.head] }

func (q *nonceFIFO) push(r nonceRec) {
	if q.n == len(q.buf) {
		q.resize(max(nonceFIFOMin, 2*len(q.buf)))
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = r
	q.n++
}

func (q *nonceFIFO) pop() nonceRec {
	r := q.buf[q.head]
	q.buf[q.head] = nonceRec{} // drop the nonce string
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if len(q.buf) > nonceFIFOMin && q.n < len(q.buf)/4 {
		q.resize(len(q.buf) / 2)
	}
	return r
}

func (q *nonceFIFO) resize(size int) {
	buf := make([]nonceRec, size)
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = buf, 0
}
