package chat

import "context"

// The role interfaces. In one process they are direct calls; across
// processes a gRPC client implements the same interface, so callers never
// know which.

// UserService is the user role: accounts and sessions.
type UserService interface {
	// Register creates an account. EINVALID for a bad username or password,
	// ECONFLICT if the username is taken.
	Register(ctx context.Context, username, password, displayName, email string) (User, error)
	// Login checks credentials and opens a session, returning its bearer
	// token. EUNAUTHENTICATED on bad credentials.
	Login(ctx context.Context, username, password string) (token string, s Session, u User, err error)
	// Logout revokes the session at once, everywhere.
	Logout(ctx context.Context, tokenHash string) error
	// Authenticate resolves a bearer token. EUNAUTHENTICATED if it is
	// unknown, expired or revoked.
	Authenticate(ctx context.Context, token string) (Caller, error)
	// User returns a user by ID. ENOTFOUND if none.
	User(ctx context.Context, id ID) (User, error)
	// UserByName returns a user by username. ENOTFOUND if none.
	UserByName(ctx context.Context, username string) (User, error)
}

// RoomUpdate holds the fields of a room to change; nil leaves one as is.
type RoomUpdate struct {
	Name        *string
	Description *string
}

// RoomService is the room role: rooms, membership and access checks.
// Every method that takes a room ID answers ENOTFOUND for a private room the
// caller is not a member of, exactly as for a missing room.
type RoomService interface {
	CreateRoom(ctx context.Context, caller ID, name, description string, private bool) (Room, error)
	Room(ctx context.Context, caller, roomID ID) (Room, error)
	ListRooms(ctx context.Context, caller ID) ([]Room, error)
	// UpdateRoom: owner only (EFORBIDDEN).
	UpdateRoom(ctx context.Context, caller, roomID ID, u RoomUpdate) (Room, error)
	// DeleteRoom: owner only (EFORBIDDEN).
	DeleteRoom(ctx context.Context, caller, roomID ID) error
	// AddMember: the owner adds a member to a private room.
	AddMember(ctx context.Context, caller, roomID ID, username string) error
	// RemoveMember: the owner, or the member themself.
	RemoveMember(ctx context.Context, caller, roomID, userID ID) error
	// Members returns up to limit members of the room with an ID above
	// after (0: from the first), by ascending ID; anyone who may read the
	// room may list them.
	Members(ctx context.Context, caller, roomID, after ID, limit int) ([]User, error)
	// CheckAccess returns nil if the user may read and post in the room.
	CheckAccess(ctx context.Context, userID, roomID ID) error
	// ReadableRooms returns the IDs of every room the user may read.
	ReadableRooms(ctx context.Context, userID ID) ([]ID, error)
}

// QueryService is the query role: reads of messages, access-checked.
type QueryService interface {
	// Latest returns the newest limit messages older than before (0: the
	// newest overall), oldest first, including acknowledged messages the
	// store has not caught up with yet.
	Latest(ctx context.Context, userID, roomID, before ID, limit int) ([]Message, error)
	// Since returns the oldest limit messages after since, oldest first,
	// including every acknowledged message; truncated reports that more exist.
	Since(ctx context.Context, userID, roomID, since ID, limit int) (msgs []Message, truncated bool, err error)
	History(ctx context.Context, userID ID, q HistoryQuery) (HistoryPage, error)
	// Search searches the rooms the user may read (q.RoomIDs, if set,
	// narrows them; a room the user may not read gives ENOTFOUND).
	Search(ctx context.Context, userID ID, q SearchQuery) (SearchResult, error)
}

// SendRequest is a message to post, already validated and access-checked.
type SendRequest struct {
	RoomID   ID     `json:"room_id"`
	UserID   ID     `json:"user_id"`
	Username string `json:"username"`
	Body     string `json:"body"`
	Nonce    string `json:"nonce,omitempty"`
}

// Sender hands a message to the ingest role and returns once it is durably
// in the log (or, for a repeated nonce, the message first stored with it).
type Sender interface {
	Send(ctx context.Context, r SendRequest) (Message, error)
}

// EncodedSender is a Sender that also returns the message's JSON (as
// Message.JSON encodes it). The in-process ingest has it at hand for the
// fanout: the gateway frames its ack with it instead of encoding the
// message a second time.
type EncodedSender interface {
	Sender
	SendEncoded(ctx context.Context, r SendRequest) (Message, []byte, error)
}
