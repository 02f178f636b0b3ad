package gateway

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/chat"
)

// Frame types of the WebSocket protocol (API.md).
const (
	typeJoin        = "join"
	typeJoined      = "joined"
	typeLeave       = "leave"
	typeLeft        = "left"
	typeSend        = "send"
	typeAck         = "ack"
	typeMessage     = "message"
	typeTyping      = "typing"
	typePing        = "ping"
	typePong        = "pong"
	typeError       = "error"
	typeRoomDeleted = "room_deleted"
	typeRemoved     = "removed"
)

// request is a client frame after validation.
type request struct {
	Type   string
	RoomID chat.ID
	Since  chat.ID
	Body   string
	Nonce  string
	at     time.Time // when it was queued for the worker
}

type inFrame struct {
	Type   string   `json:"type"`
	RoomID *chat.ID `json:"room_id"`
	Since  *chat.ID `json:"since"`
	Body   *string  `json:"body"`
	Nonce  *string  `json:"nonce"`
}

// parseRequest validates a client frame. The error is the client-safe
// reason the frame was refused.
func parseRequest(typ websocket.MessageType, b []byte) (request, *chat.Error) {
	if typ != websocket.MessageText {
		return request{}, chat.Errorf(chat.EINVALID, "frames must be JSON text")
	}
	if !utf8.Valid(b) {
		return request{}, chat.Errorf(chat.EINVALID, "frame is not valid UTF-8")
	}
	f, err := decodeFrame(b)
	if err != nil {
		// Still find out whether it was a send, whose error must carry
		// the send's nonce.
		var h struct {
			Type  string `json:"type"`
			Nonce string `json:"nonce"`
		}
		_ = json.Unmarshal(b, &h)
		return request{Type: h.Type, Nonce: h.Nonce}, chat.Errorf(chat.EINVALID, "frame must be a JSON object with valid fields")
	}
	req := request{Type: f.Type}
	if f.Nonce != nil {
		req.Nonce = *f.Nonce
	}
	needRoom := false
	switch f.Type {
	case typePing:
	case typeJoin:
		needRoom = true
		if f.Since != nil {
			if *f.Since <= 0 {
				return req, chat.Errorf(chat.EINVALID, "since must be a positive message id")
			}
			req.Since = *f.Since
		}
	case typeLeave, typeTyping:
		needRoom = true
	case typeSend:
		needRoom = true
		if f.Body == nil {
			return req, chat.Errorf(chat.EINVALID, "send needs a body")
		}
		req.Body = *f.Body
	case "":
		return req, chat.Errorf(chat.EINVALID, "frame needs a type")
	default:
		return req, chat.Errorf(chat.EINVALID, "unknown frame type")
	}
	if needRoom {
		if f.RoomID == nil || *f.RoomID <= 0 {
			return req, chat.Errorf(chat.EINVALID, "room_id must be a positive id")
		}
		req.RoomID = *f.RoomID
	}
	return req, nil
}

// decodeFrame decodes a client frame exactly as json.Unmarshal into an
// inFrame would. The frames clients send are flat objects of a few
// strings; those are read by a direct scan, five times cheaper than
// encoding/json (one frame per send). Anything else (escapes, numbers,
// other or repeated keys, nesting) goes to json.Unmarshal, so the result
// never depends on which path ran. b is valid UTF-8.
func decodeFrame(b []byte) (inFrame, error) {
	if f, ok := scanFrame(b); ok {
		return f, nil
	}
	var f inFrame
	err := json.Unmarshal(b, &f)
	return f, err
}

// scanFrame reads b if it is a JSON object whose keys are distinct fields
// of inFrame, spelled as tagged, each with a string value free of escapes
// and control characters, room_id and since holding digits only.
func scanFrame(b []byte) (f inFrame, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return f, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return f, skipSpace(b, i+1) == len(b)
	}
	var seen uint8
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return f, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return f, false
		}
		val, j, ok := scanString(b, skipSpace(b, i+1))
		if !ok {
			return f, false
		}
		var bit uint8
		switch string(key) {
		case "type":
			bit, f.Type = 1, string(val)
		case "body":
			bit = 2
			f.Body = new(string(val))
		case "nonce":
			bit = 4
			f.Nonce = new(string(val))
		case "room_id", "since":
			id, ok := digitsID(val)
			if !ok {
				return f, false
			}
			if key[0] == 'r' {
				bit, f.RoomID = 8, &id
			} else {
				bit, f.Since = 16, &id
			}
		default:
			return f, false
		}
		if seen&bit != 0 {
			return f, false
		}
		seen |= bit
		i = skipSpace(b, j)
		if i >= len(b) {
			return f, false
		}
		if b[i] == '}' {
			return f, skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return f, false
		}
		i = skipSpace(b, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads a JSON string at b[i] without escapes or control
// characters and returns its contents and the index after it.
func scanString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// digitsID parses 1 to 18 decimal digits, as chat.ID's UnmarshalJSON
// reads them (18 cannot overflow an int64).
func digitsID(s []byte) (chat.ID, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return chat.ID(n), true
}

var pongWire = wsText([]byte(`{"type":"pong"}`))

type roomOnlyFrame struct {
	Type   string  `json:"type"`
	RoomID chat.ID `json:"room_id"`
}

func roomFrame(typ string, id chat.ID) []byte {
	return mustJSON(roomOnlyFrame{typ, id})
}

type joinedFrame struct {
	Type      string         `json:"type"`
	RoomID    chat.ID        `json:"room_id"`
	Messages  []chat.Message `json:"messages"`
	Truncated bool           `json:"truncated,omitempty"`
}

type errorFrame struct {
	Type         string  `json:"type"`
	Code         string  `json:"code"`
	Message      string  `json:"message"`
	Nonce        *string `json:"nonce,omitempty"`
	RoomID       chat.ID `json:"room_id,omitempty"`
	RetryAfterMS int64   `json:"retry_after_ms,omitempty"`
}

type typingFrame struct {
	Type     string  `json:"type"`
	RoomID   chat.ID `json:"room_id"`
	UserID   chat.ID `json:"user_id"`
	Username string  `json:"username"`
}

// errFrame renders err as an error frame. nonce is set for answers to a
// send, which always carry it.
func errFrame(err error, room chat.ID, nonce *string) []byte {
	w := chat.ToWire(err)
	return mustJSON(errorFrame{
		Type: typeError, Code: w.Code, Message: w.Message,
		Nonce: nonce, RoomID: room, RetryAfterMS: w.RetryAfterMS,
	})
}

var internalErrFrame = []byte(`{"type":"error","code":"internal","message":"internal error"}`)

// mustJSON encodes frames built from our own types. They cannot fail to
// encode; if one ever did, the client gets an internal error frame rather
// than the process a panic.
// ackJSON is the ack frame of a send around msgJSON, the message's JSON
// (chat.Message.JSON): byte for byte what json.Marshal(ackFrame{...})
// gives, without its reflection and the re-compaction of the message's own
// JSON, which ingest has encoded already: one ack per send.
func ackJSON(nonce string, msgJSON []byte) []byte {
	b := make([]byte, 0, 32+len(nonce)+len(msgJSON))
	b = append(b, `{"type":"ack","nonce":`...)
	b = chat.AppendJSONString(b, nonce)
	b = append(b, `,"message":`...)
	b = append(b, msgJSON...)
	return append(b, '}')
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return internalErrFrame
	}
	return b
}
