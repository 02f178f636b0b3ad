package chat

import (
	"errors"
	"strconv"
	"sync"
	"time"
)

// ID is a Snowflake-style 64-bit identifier: milliseconds since Epoch in the
// high 41 bits, a 10-bit node number, and a 12-bit sequence. IDs from one
// generator strictly increase, so they order messages and page history.
// On the wire an ID is a decimal string, because JavaScript numbers cannot
// hold 64-bit integers.
type ID int64

// Epoch is the zero time of IDs: 2024-01-01T00:00:00Z.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	nodeBits = 10
	seqBits  = 12
	// MaxNode is the largest node number a generator accepts.
	MaxNode = 1<<nodeBits - 1
	maxSeq  = 1<<seqBits - 1
)

// String returns the decimal form of id.
func (id ID) String() string { return strconv.FormatInt(int64(id), 10) }

// Time returns the millisecond at which id was generated.
func (id ID) Time() time.Time {
	return Epoch.Add(time.Duration(int64(id)>>(nodeBits+seqBits)) * time.Millisecond)
}

// MinIDAt returns the smallest ID that can be generated at t, for turning a
// time bound into an ID bound.
func MinIDAt(t time.Time) ID {
	ms := t.Sub(Epoch).Milliseconds()
	if ms < 0 {
		return 0
	}
	return ID(ms << (nodeBits + seqBits))
}

// ParseID parses a decimal ID. Zero and negative values are refused.
func ParseID(s string) (ID, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, Errorf(EINVALID, "invalid id %q", truncate(s, 40))
	}
	return ID(n), nil
}

// MarshalJSON encodes the ID as a JSON string.
func (id ID) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 22)
	b = append(b, '"')
	b = strconv.AppendInt(b, int64(id), 10)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts a decimal string (the wire form) or a bare number.
func (id *ID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" || s == "null" {
		*id = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("id must be a decimal string")
	}
	*id = ID(n)
	return nil
}

// IDGen generates IDs for one node. It is safe for concurrent use.
type IDGen struct {
	mu   sync.Mutex
	node int64
	last int64 // last millisecond used
	seq  int64
	now  func() time.Time
}

// NewIDGen returns a generator for node (0..MaxNode).
func NewIDGen(node int) (*IDGen, error) {
	if node < 0 || node > MaxNode {
		return nil, Errorf(EINVALID, "node id %d out of range 0..%d", node, MaxNode)
	}
	return &IDGen{node: int64(node), now: time.Now}, nil
}

// Next returns the next ID and the time it stands for. If the clock goes
// backwards, the generator keeps using its last millisecond so IDs never
// decrease; if a millisecond's sequence is used up, it moves to the next one.
func (g *IDGen) Next() (ID, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	ms := now.Sub(Epoch).Milliseconds()
	if ms <= g.last {
		g.seq++
		if g.seq > maxSeq {
			g.last++
			g.seq = 0
		}
		ms = g.last
		// The clock is behind the IDs already handed out: stamp the
		// message with the ID's time so created_at and ID agree in order.
		if t := Epoch.Add(time.Duration(ms) * time.Millisecond); now.Before(t) {
			now = t
		}
	} else {
		g.last = ms
		g.seq = 0
	}
	return ID(ms<<(nodeBits+seqBits) | g.node<<seqBits | g.seq), now.UTC()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
