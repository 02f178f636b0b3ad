package chat

import (
	"strconv"
	"unicode/utf8"
)

// JSON returns m's public JSON object (AppendJSON into a buffer sized for it).
func (m Message) JSON() []byte { return m.AppendJSON(make([]byte, 0, jsonSizeHint+len(m.Body))) }

// jsonSizeHint is the bytes of a message's JSON apart from its body.
const jsonSizeHint = 160

// AppendJSON appends m's public JSON object (API.md), byte for byte what
// MarshalJSON gives, without encoding/json's reflection and re-validation:
// a send encodes its message several times (log entry, nonce claim, recent
// window, fanout frame, ack), so this is on the hot path.
func (m Message) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendID(dst, m.ID)
	dst = append(dst, `,"room_id":`...)
	dst = appendID(dst, m.RoomID)
	dst = append(dst, `,"user_id":`...)
	dst = appendID(dst, m.UserID)
	dst = append(dst, `,"username":`...)
	dst = appendJSONString(dst, m.Username)
	dst = append(dst, `,"body":`...)
	dst = appendJSONString(dst, m.Body)
	dst = append(dst, `,"created_at":"`...)
	dst = m.CreatedAt.UTC().AppendFormat(dst, TimeFormat)
	dst = append(dst, '"')
	if m.Nonce != "" {
		dst = append(dst, `,"nonce":`...)
		dst = appendJSONString(dst, m.Nonce)
	}
	if m.EditedAt != nil {
		dst = append(dst, `,"edited_at":"`...)
		dst = m.EditedAt.UTC().AppendFormat(dst, TimeFormat)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func appendID(dst []byte, id ID) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, int64(id), 10)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s quoted as a JSON string, byte for byte as
// encoding/json quotes it (see appendJSONString), for frames that wrap a
// message without reflection.
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

// appendJSONString quotes s exactly as encoding/json does by default: HTML
// characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
