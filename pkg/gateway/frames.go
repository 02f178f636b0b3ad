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
	var f inFrame
	if err := json.Unmarshal(b, &f); err != nil {
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
// ackJSON is the ack frame of a send, byte for byte what
// json.Marshal(ackFrame{...}) gives, without its reflection and the
// re-compaction of the message's own JSON: one ack per send.
func ackJSON(nonce string, m chat.Message) []byte {
	b := make([]byte, 0, 64+len(nonce)+160+len(m.Body))
	b = append(b, `{"type":"ack","nonce":`...)
	b = chat.AppendJSONString(b, nonce)
	b = append(b, `,"message":`...)
	b = m.AppendJSON(b)
	return append(b, '}')
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return internalErrFrame
	}
	return b
}
