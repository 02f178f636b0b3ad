package jetstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chatd/chatd/pkg/chat"
)

// appendEntry decodes a log entry, the JSON objects of its messages one
// per line (AppendAsync), and appends them to msgs in order. An entry of
// one message is one object, as every entry was before entries held
// several. Lines that do not decode into a message with an ID and a room
// are skipped: bad counts them and err is the first one's error.
func appendEntry(msgs []chat.Message, b []byte) (_ []chat.Message, bad int, err error) {
	before := len(msgs)
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		m, lerr := decodeMessage(line)
		if lerr == nil && (m.ID <= 0 || m.RoomID <= 0) {
			lerr = errors.New("message without id or room")
		}
		if lerr != nil {
			if bad == 0 {
				err = lerr
			}
			bad++
			continue
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == before && bad == 0 {
		return msgs, 1, errors.New("empty entry")
	}
	return msgs, bad, err
}

// decodeMessage decodes one message of a log entry exactly as json.Unmarshal into a
// chat.Message would. Entries written by Append have one fixed shape
// (chat.Message.AppendJSON); those are read by a direct scan, which costs a
// fraction of encoding/json's reflection and validation. Anything else —
// escapes in a string, other field order, edited_at, whitespace — goes to
// json.Unmarshal, so the result never depends on which path ran.
func decodeMessage(b []byte) (chat.Message, error) {
	if m, ok := scanMessage(b); ok {
		return m, nil
	}
	var m chat.Message
	err := json.Unmarshal(b, &m)
	return m, err
}

type scanner struct {
	b  []byte
	ok bool
}

// lit consumes s.
func (s *scanner) lit(lit string) {
	if !s.ok || !bytes.HasPrefix(s.b, []byte(lit)) {
		s.ok = false
		return
	}
	s.b = s.b[len(lit):]
}

// str consumes a JSON string without escapes or control characters, in
// valid UTF-8, and returns its contents.
func (s *scanner) str() string {
	if !s.ok || len(s.b) == 0 || s.b[0] != '"' {
		s.ok = false
		return ""
	}
	end := bytes.IndexByte(s.b[1:], '"')
	if end < 0 {
		s.ok = false
		return ""
	}
	raw := s.b[1 : 1+end]
	for _, c := range raw {
		if c < 0x20 || c == '\\' {
			s.ok = false
			return ""
		}
	}
	if !utf8.Valid(raw) {
		s.ok = false
		return ""
	}
	s.b = s.b[end+2:]
	return string(raw)
}

// id consumes a quoted decimal ID.
func (s *scanner) id() chat.ID {
	if !s.ok || len(s.b) < 3 || s.b[0] != '"' {
		s.ok = false
		return 0
	}
	end := bytes.IndexByte(s.b[1:], '"')
	if end < 1 || end > 19 {
		s.ok = false
		return 0
	}
	digits := s.b[1 : 1+end]
	for _, c := range digits {
		if c < '0' || c > '9' {
			s.ok = false
			return 0
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		s.ok = false
		return 0
	}
	s.b = s.b[end+2:]
	return chat.ID(n)
}

func scanMessage(b []byte) (chat.Message, bool) {
	s := scanner{b: b, ok: true}
	var m chat.Message
	s.lit(`{"id":`)
	m.ID = s.id()
	s.lit(`,"room_id":`)
	m.RoomID = s.id()
	s.lit(`,"user_id":`)
	m.UserID = s.id()
	s.lit(`,"username":`)
	m.Username = s.str()
	s.lit(`,"body":`)
	m.Body = s.str()
	s.lit(`,"created_at":`)
	created := s.str()
	if s.ok && bytes.HasPrefix(s.b, []byte(`,"nonce":`)) {
		s.lit(`,"nonce":`)
		m.Nonce = s.str()
	}
	s.lit(`}`)
	if !s.ok || len(s.b) != 0 || created == "" {
		return chat.Message{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return chat.Message{}, false
	}
	m.CreatedAt = t.UTC()
	return m, true
}
