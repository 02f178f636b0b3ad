package redis

import (
	"container/heap"
	"sync"
	"time"
)

// expiry expires keys for the embedded cache. miniredis never expires keys
// by itself (TTLs only count down on FastForward, and ClockTTL fast-forwards
// on every command), and its fast-forward copies and sorts every key under
// its global lock, so neither scales to the many live keys of a busy
// server. Instead this package records the deadline of each key it writes
// with a TTL and deletes the key when that deadline passes: O(log n) per
// write, O(expired) per sweep.
//
// It is an indexed min-heap: byKey holds each key's one entry, and
// re-tracking a key moves that entry in the heap (heap.Fix) rather than
// pushing another, so the tracker holds exactly one entry per tracked key and
// whatever it pops is that key's current deadline: a key re-set with a later
// deadline is never deleted early. A key deleted by other means keeps its
// entry until its deadline, when deleting it again is a no-op; so the
// tracker's size is bounded by the keys written within their TTL.
//
// Writers that may overwrite a key (SET, EXPIRE, the rate limiter's script)
// call track before the write, and sweep deletes under mu: a sweep then
// either deletes the old key before the deadline moves (the write creates a
// new one, tracked) or finds the new deadline and leaves the key alone.
//
// What this cannot reach: miniredis keeps a WATCH version per key ever
// written (RedisDB.keyVersion), which not even DEL removes, so each expired
// key still leaves some 60-100 bytes behind. That is why nonce claims, a
// new key per sent message, are not kept in miniredis at all but in
// nonceTable, which this sweeper also sweeps (also), as it does the rooms'
// windows (recentTable, kept natively for CPU); the keys left here are one
// per session or rate-limited key, written far more rarely.
type expiry struct {
	// del deletes a key from the store; called with mu held.
	del func(key string)
	// now is the clock, read with mu held; tests replace it. Others read
	// it through clock.
	now func() time.Time
	// also, if set (before start), is called by every sweep after its own
	// keys, without mu, and returns how many entries it removed.
	also func() int

	mu    sync.Mutex
	byKey map[string]*expEntry
	h     expHeap

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

type expEntry struct {
	key   string
	at    int64 // deadline, Unix nanoseconds
	index int   // in expiry.h
}

// sweepEvery is how often the sweeper runs; a key outlives its TTL by at
// most about this much.
const sweepEvery = time.Second

// sweepBatch bounds the keys deleted per hold of mu, so a sweep with a large
// backlog never keeps writers (track) waiting for long.
const sweepBatch = 256

func newExpiry(del func(key string)) *expiry {
	return &expiry{del: del, now: time.Now, byKey: map[string]*expEntry{}}
}

// clock returns the tracker's time, for the other users of its clock.
func (x *expiry) clock() time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.now()
}

// start runs the sweeper until close.
func (x *expiry) start(every time.Duration) {
	x.stop = make(chan struct{})
	x.done = make(chan struct{})
	go func() {
		defer close(x.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-x.stop:
				return
			case <-t.C:
				x.sweep()
			}
		}
	}()
}

// close stops the sweeper and waits for it to return.
func (x *expiry) close() {
	if x == nil || x.stop == nil {
		return
	}
	x.stopOnce.Do(func() { close(x.stop) })
	<-x.done
}

// track sets key's deadline to ttl from now, replacing any earlier one (as
// SET and EXPIRE replace a TTL). No-op on a nil tracker (a real Redis).
func (x *expiry) track(key string, ttl time.Duration) {
	if x == nil {
		return
	}
	x.mu.Lock()
	x.trackLocked(key, x.deadline(ttl))
	x.mu.Unlock()
}

// trackKeys is track for several keys with one TTL, under one lock.
func (x *expiry) trackKeys(keys []string, ttl time.Duration) {
	if x == nil || len(keys) == 0 {
		return
	}
	x.mu.Lock()
	at := x.deadline(ttl)
	for _, k := range keys {
		x.trackLocked(k, at)
	}
	x.mu.Unlock()
}

// deadline returns now+ttl rounded up to the second. Sweeps are about a
// second apart anyway, and a key re-tracked within the same second (a busy
// room's window) then keeps its deadline and its place in the heap.
func (x *expiry) deadline(ttl time.Duration) int64 {
	const s = int64(time.Second)
	at := x.now().Add(ttl).UnixNano()
	if r := at % s; r != 0 {
		at += s - r
	}
	return at
}

func (x *expiry) trackLocked(key string, at int64) {
	if e, ok := x.byKey[key]; ok {
		if e.at != at {
			e.at = at
			heap.Fix(&x.h, e.index)
		}
		return
	}
	e := &expEntry{key: key, at: at}
	heap.Push(&x.h, e)
	x.byKey[key] = e
}

// sweep deletes every key whose deadline has passed, then runs also, and
// returns how many it deleted. It releases mu every sweepBatch keys.
func (x *expiry) sweep() int {
	if x == nil {
		return 0
	}
	n := 0
	x.mu.Lock()
	now := x.now().UnixNano()
	for {
		for i := 0; i < sweepBatch && len(x.h) > 0 && x.h[0].at <= now; i++ {
			e := heap.Pop(&x.h).(*expEntry)
			delete(x.byKey, e.key)
			x.del(e.key)
			n++
		}
		more := len(x.h) > 0 && x.h[0].at <= now
		x.mu.Unlock()
		if !more {
			if x.also != nil {
				n += x.also()
			}
			return n
		}
		x.mu.Lock()
	}
}

// len returns how many keys are tracked.
func (x *expiry) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byKey)
}

// expHeap is a min-heap of entries by deadline (container/heap).
type expHeap []*expEntry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *expHeap) Push(v any) {
	e := v.(*expEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
