package sqlite

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// The cache answers exactly the IDs added, in whatever order they came,
// through merges of late IDs and the trim of the oldest; an ID it never got
// (or dropped) has no answer.
func TestRoomCacheAddAndLookup(t *testing.T) {
	const max = 5000
	c := newRoomCache(max, nil)
	r := rand.New(rand.NewPCG(1, 2))
	want := map[int64]uint32{}
	next := int64(1000)
	for batch := range 400 {
		var entries []roomEntry
		for range 1 + r.IntN(40) {
			var id int64
			if batch > 0 && r.IntN(4) == 0 {
				id = 1000 + r.Int64N(next-1000) // late: below the newest
			} else {
				next += 1 + r.Int64N(3)
				id = next
			}
			room := uint32(r.IntN(300))
			if old, ok := want[id]; ok {
				room = old // an ID's room never changes
			}
			want[id] = room
			entries = append(entries, roomEntry{id, room})
		}
		c.add(entries)
	}
	s := c.snap.Load()
	if s.len() > max+lateMax {
		t.Fatalf("holds %d entries, cap %d (+%d late)", s.len(), max, lateMax)
	}
	oldest := s.ids[0]
	held := 0
	for id, room := range want {
		got, ok := s.room(id)
		switch {
		case ok && got != room:
			t.Fatalf("id %d: room %d, want %d", id, got, room)
		case !ok && id >= oldest:
			t.Fatalf("id %d (newer than the oldest held, %d) is missing", id, oldest)
		case ok:
			held++
		}
	}
	if held < max/2 {
		t.Fatalf("holds %d of the newest entries", held)
	}
	for _, id := range []int64{0, 999, next + 1} {
		if _, ok := s.room(id); ok {
			t.Fatalf("id %d was never added, but has a room", id)
		}
	}
}

// A search keeps the snapshot it registered with: later adds, merges and
// trims do not change its answers; and chatd_room_in answers 1, 0, or NULL
// for an ID the snapshot does not hold.
func TestRoomQuerySnapshot(t *testing.T) {
	c := newRoomCache(100, nil)
	if tok, release := c.register([]int64{1}); tok != 0 {
		release()
		t.Fatal("an empty cache registered a query: every match would be looked up for nothing")
	}
	c.add([]roomEntry{{10, 1}, {20, 2}, {30, 3}})
	tok, release := c.register([]int64{1, 3, 130})
	defer release()
	v, _ := roomQueries.Load(tok)
	q := v.(*roomQuery)
	for i := range 300 {
		c.add([]roomEntry{{int64(40 + i), 1}, {int64(5 + i%3), 2}}) // appends, late IDs, trims
	}
	for id, want := range map[int64]any{10: int64(1), 20: int64(0), 30: int64(1), 40: nil, 5: nil} {
		if got := q.check(id); got != want {
			t.Errorf("check(%d) = %v, want %v", id, got, want)
		}
	}
	if _, ok := c.snap.Load().room(10); ok {
		t.Error("the cache kept an entry past its cap")
	}
	release()
	if _, ok := roomQueries.Load(tok); ok {
		t.Error("release left the query registered")
	}
}

// Readers look up while a writer adds (run with -race).
func TestRoomCacheConcurrentReaders(t *testing.T) {
	c := newRoomCache(2000, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := c.snap.Load()
				for id := int64(0); id < 5000; id += 7 {
					if room, ok := s.room(id); ok && room != uint32(id%97) {
						t.Errorf("id %d: room %d", id, room)
						return
					}
				}
			}
		}()
	}
	for i := range 1000 {
		c.add([]roomEntry{{int64(2*i + 10), uint32((2*i + 10) % 97)}, {int64(i), uint32(i % 97)}})
	}
	close(stop)
	wg.Wait()
}
