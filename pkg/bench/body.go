package bench

import (
	"bytes"
	"math"
	"strconv"
)

// stamp is what the bench embeds in every message it sends, so the receiver
// can tell who sent it, in which order and when, and which step of the run it
// belongs to.
type stamp struct {
	Step int   // step of the run (fanout steps up the rate; others have one)
	Pub  int   // publisher number, 1-based, unique in the run
	Seq  int64 // per-publisher sequence, 1-based, never reused in a run
	Sent int64 // send time, Unix nanoseconds
}

const bodyMagic = "cb1"

// encodeBody appends the body for s to dst, padded with 'x' to size bytes
// (the stamp itself is never cut). Bodies are plain ASCII without quotes or
// backslashes, so they go into a JSON frame as they are.
func encodeBody(dst []byte, s stamp, size int) []byte {
	start := len(dst)
	dst = append(dst, bodyMagic...)
	dst = append(dst, ' ')
	dst = appendStamp(dst, s, ' ')
	if len(dst)-start+1 < size {
		dst = append(dst, ' ')
		for len(dst)-start < size {
			dst = append(dst, 'x')
		}
	}
	return dst
}

// decodeBody reads a body written by encodeBody; ok is false for any other.
// It is on the receive path of every delivery, so it parses by hand.
func decodeBody(b []byte) (s stamp, ok bool) {
	if len(b) < len(bodyMagic)+1 || string(b[:len(bodyMagic)]) != bodyMagic || b[len(bodyMagic)] != ' ' {
		return stamp{}, false
	}
	b = b[len(bodyMagic)+1:]
	var n [4]int64
	for i := range n {
		v, rest, ok := leadingInt(b)
		if !ok {
			return stamp{}, false
		}
		n[i] = v
		switch {
		case len(rest) == 0:
			if i != len(n)-1 {
				return stamp{}, false
			}
		case rest[0] != ' ':
			return stamp{}, false
		default:
			rest = rest[1:]
		}
		b = rest
	}
	return stamp{Step: int(n[0]), Pub: int(n[1]), Seq: n[2], Sent: n[3]}, true
}

// leadingInt parses the decimal digits at the start of b (no sign; false
// on none or on overflow).
func leadingInt(b []byte) (v int64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, nil, false
		}
		v = v*10 + d
	}
	if i == 0 {
		return 0, nil, false
	}
	return v, b[i:], true
}

// encodeNonce is the send's idempotency key; it carries the stamp too, so an
// ack can be accounted without a table of pending sends.
func encodeNonce(dst []byte, s stamp) []byte {
	return appendStamp(dst, s, '.')
}

// appendStamp appends s's four numbers, sep between them (the body and the
// nonce differ only in it).
func appendStamp(dst []byte, s stamp, sep byte) []byte {
	dst = strconv.AppendInt(dst, int64(s.Step), 10)
	dst = append(dst, sep)
	dst = strconv.AppendInt(dst, int64(s.Pub), 10)
	dst = append(dst, sep)
	dst = strconv.AppendInt(dst, s.Seq, 10)
	dst = append(dst, sep)
	return strconv.AppendInt(dst, s.Sent, 10)
}

func decodeNonce(b []byte) (s stamp, ok bool) {
	var n [4]int64
	for i := range n {
		j := bytes.IndexByte(b, '.')
		if j < 0 {
			if i != len(n)-1 {
				return stamp{}, false
			}
			j = len(b)
		}
		v, err := strconv.ParseInt(string(b[:j]), 10, 64)
		if err != nil || v < 0 {
			return stamp{}, false
		}
		n[i] = v
		if j < len(b) {
			b = b[j+1:]
		} else {
			b = nil
		}
	}
	if len(b) != 0 {
		return stamp{}, false
	}
	return stamp{Step: int(n[0]), Pub: int(n[1]), Seq: n[2], Sent: n[3]}, true
}

// sendFrame appends a WebSocket send frame. room is a decimal ID.
func sendFrame(dst []byte, room string, s stamp, size int) []byte {
	dst = append(dst, `{"type":"send","room_id":"`...)
	dst = append(dst, room...)
	dst = append(dst, `","body":"`...)
	dst = encodeBody(dst, s, size)
	dst = append(dst, `","nonce":"`...)
	dst = encodeNonce(dst, s)
	return append(dst, `"}`...)
}

// stringField finds the first `"key":"value"` in a JSON frame and returns
// value, when it has no escapes. It is a fast path for the frames the server
// sends (the frame type comes first; message objects have no "type" key);
// anything it cannot read this way is left to encoding/json or ignored.
func stringField(b []byte, key string) ([]byte, bool) {
	var pat [40]byte
	p := append(pat[:0], '"')
	p = append(p, key...)
	p = append(p, `":"`...)
	i := bytes.Index(b, p)
	if i < 0 {
		return nil, false
	}
	b = b[i+len(p):]
	j := bytes.IndexByte(b, '"')
	if j < 0 || bytes.IndexByte(b[:j], '\\') >= 0 {
		return nil, false
	}
	return b[:j], true
}

// messageFrame is a server message frame as chatd writes it, carrying s in
// its body (the self-test sender and the benchmarks).
func messageFrame(s stamp) []byte {
	b := make([]byte, 0, 320)
	b = append(b, `{"type":"message","message":{"id":"`...)
	b = strconv.AppendInt(b, 7400000000000000000+s.Seq, 10)
	b = append(b, `","room_id":"7399999999999999999","user_id":"7399999999999999998","username":"bench","body":"`...)
	b = encodeBody(b, s, 100)
	b = append(b, `","created_at":"2026-11-27T08:00:00.123456Z","nonce":"`...)
	b = encodeNonce(b, s)
	return append(b, `"}}`...)
}
