package chat

import "context"

// NATS subjects shared by the roles. The fanout bus is NATS (embedded
// server or external cluster), except that room frames stay in memory when
// no other process can reach the embedded server (see RoomBus); these names
// are the wire contract between roles running in different processes.
const (
	// SubjectIngest is where gateways send SendRequests (request/reply,
	// queue group QueueIngest, so each request is handled once however many
	// ingest instances run). The reply is an IngestReply.
	SubjectIngest = "chatd.ingest"
	QueueIngest   = "ingest"
	// SubjectRoomPrefix + room ID carries ready-to-send server frames for a
	// room (message and typing frames), published by ingest and gateways.
	// The header HeaderType says which frame it is, HeaderUser who caused it.
	SubjectRoomPrefix = "chatd.room."
	// SubjectControl carries ControlEvents to every gateway.
	SubjectControl = "chatd.ctl"

	HeaderType  = "Chatd-Type"
	HeaderUser  = "Chatd-User"
	HeaderNonce = "Chatd-Nonce" // the sender's nonce, on message frames that have one
)

// RoomSubject returns the fanout subject of a room.
func RoomSubject(room ID) string { return SubjectRoomPrefix + room.String() }

// RoomFrame is one ready-to-send server frame for a room's members, with
// what a gateway needs to route it without decoding the JSON. Data is
// shared by every receiver and never modified once published.
type RoomFrame struct {
	Type  string // the frame's type: "message", "typing", ...
	User  ID     // who caused it: a message's author, the typing user
	Nonce string // a message's nonce, if it has one
	Data  []byte // the frame's JSON
}

// RoomBus carries room frames from ingest and gateways to every gateway
// with a member in the room. A subscriber gets the frames of one publisher
// in the order they were published, one call at a time; a call may carry
// several frames when they queued while the subscriber was busy, so it can
// coalesce them (the slice is valid only during the call).
type RoomBus interface {
	PublishRoom(room ID, f RoomFrame) error
	SubscribeRoom(room ID, fn func([]RoomFrame)) (unsubscribe func(), err error)
	// Sync returns once the subscriptions made before it are in effect:
	// they get every frame published after Sync returns.
	Sync(ctx context.Context) error
}

// IngestReply answers a SendRequest: the stored message, or an error.
type IngestReply struct {
	Message *Message   `json:"message,omitempty"`
	Error   *WireError `json:"error,omitempty"`
}

// WireError is an *Error on the wire.
type WireError struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// ToWire converts any error to its client-safe wire form.
func ToWire(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Code: ErrorCode(err), Message: ErrorMessage(err)}
	if e := AsError(err); e != nil {
		w.RetryAfterMS = e.RetryAfterMillis
	}
	return w
}

// Err converts the wire form back to an *Error.
func (w *WireError) Err() error {
	if w == nil {
		return nil
	}
	return &Error{Code: w.Code, Message: w.Message, RetryAfterMillis: w.RetryAfterMS}
}

// Control event types on SubjectControl.
const (
	EventRoomDeleted    = "room_deleted"    // RoomID
	EventMemberRemoved  = "removed"         // RoomID, UserID
	EventSessionRevoked = "session_revoked" // TokenHash
)

// ControlEvent tells every gateway to act on a change made by another role.
type ControlEvent struct {
	Type      string `json:"type"`
	RoomID    ID     `json:"room_id,omitempty"`
	UserID    ID     `json:"user_id,omitempty"`
	TokenHash string `json:"token_hash,omitempty"`
}

// EventPublisher publishes control events (a NATS connection in practice).
type EventPublisher interface {
	PublishControl(e ControlEvent) error
}
