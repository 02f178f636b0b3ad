package bench

// seqTracker follows one publisher's sequence as one connection sees it.
type seqTracker struct {
	max  int64
	seen []uint64 // bit seq is set once seq was received
}

// observe records seq (>= 1) and says whether it was already seen and
// whether it arrived after a later one.
func (t *seqTracker) observe(seq int64) (dup, reordered bool) {
	w, bit := int(seq>>6), uint64(1)<<(seq&63)
	for len(t.seen) <= w {
		t.seen = append(t.seen, 0)
	}
	if t.seen[w]&bit != 0 {
		return true, false
	}
	t.seen[w] |= bit
	if seq < t.max {
		return false, true
	}
	t.max = seq
	return false, false
}

// Tally is delivery accounting: every acked message should reach every
// connection that was in its room, once, in order.
type Tally struct {
	Expected int64 `json:"expected"` // acked messages times the connections in their room
	Received int64 `json:"received"` // message frames of this run's current step
	Unique   int64 `json:"unique"`   // distinct (connection, publisher, sequence)
	Dups     int64 `json:"duplicates"`
	Reorders int64 `json:"reordered"` // arrived after a later message of the same publisher
	Late     int64 `json:"late"`      // arrived after their step was over
}

// Lost is expected deliveries that never came.
func (t Tally) Lost() int64 {
	if t.Expected > t.Unique {
		return t.Expected - t.Unique
	}
	return 0
}

// expectedDeliveries is the number of deliveries a run owes: each acked
// message once to every connection in its room.
func expectedDeliveries(ackedByRoom map[string]int64, members map[string]int) int64 {
	var n int64
	for room, a := range ackedByRoom {
		n += a * int64(members[room])
	}
	return n
}
