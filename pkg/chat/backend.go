package chat

import (
	"context"
	"time"
)

// The backend interfaces. Each has one implementation per backend (embedded
// SQLite/JetStream, distributed PostgreSQL/Kafka/ScyllaDB/Elasticsearch), all
// passing the conformance suites in package chattest.

// AccountStore keeps users and sessions (SQLite, PostgreSQL).
type AccountStore interface {
	// CreateUser stores u (its ID set by the caller) with its password hash.
	// ECONFLICT if the username is taken.
	CreateUser(ctx context.Context, u User, passwordHash string) error
	// UserByID returns the user. ENOTFOUND if none.
	UserByID(ctx context.Context, id ID) (User, error)
	// UserByUsername returns the user and its password hash. ENOTFOUND if none.
	UserByUsername(ctx context.Context, username string) (User, string, error)
	// CreateSession stores s.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with that token hash, expired or not.
	// ENOTFOUND if none.
	Session(ctx context.Context, tokenHash string) (Session, error)
	// DeleteSession removes a session. Deleting a missing one is not an error.
	DeleteSession(ctx context.Context, tokenHash string) error
	// DeleteExpiredSessions removes sessions that expired before t.
	DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error)
}

// RoomStore keeps rooms and memberships (SQLite, PostgreSQL).
type RoomStore interface {
	// CreateRoom stores r and makes its owner a member.
	CreateRoom(ctx context.Context, r Room) error
	// Room returns the room. ENOTFOUND if none.
	Room(ctx context.Context, id ID) (Room, error)
	// UpdateRoom writes r's name and description. ENOTFOUND if none.
	UpdateRoom(ctx context.Context, r Room) error
	// DeleteRoom removes the room and its memberships. ENOTFOUND if none.
	DeleteRoom(ctx context.Context, id ID) error
	// ListRooms returns the public rooms and the private rooms userID is a
	// member of, ordered by ID.
	ListRooms(ctx context.Context, userID ID) ([]Room, error)
	// AddMember makes userID a member of roomID; adding a member twice is
	// not an error. ENOTFOUND if the room does not exist.
	AddMember(ctx context.Context, roomID, userID ID) error
	// RemoveMember removes the membership. ENOTFOUND if there is none.
	RemoveMember(ctx context.Context, roomID, userID ID) error
	// IsMember reports whether userID is a member of roomID.
	IsMember(ctx context.Context, roomID, userID ID) (bool, error)
	// Members returns up to limit member IDs of roomID above after (0:
	// from the first), in ascending order. A missing room has none.
	Members(ctx context.Context, roomID, after ID, limit int) ([]ID, error)
}

// MessageStore keeps messages for recent reads and paging (SQLite, ScyllaDB).
type MessageStore interface {
	// WriteMessages stores msgs. Writing a message whose ID is stored
	// already changes nothing, so redelivery from the log is harmless.
	WriteMessages(ctx context.Context, msgs []Message) error
	// MessagesBefore returns the newest limit messages of the room with an ID
	// below before (before == 0: the newest overall), oldest first.
	MessagesBefore(ctx context.Context, roomID, before ID, limit int) ([]Message, error)
	// MessagesAfter returns the oldest limit messages of the room with an ID
	// above after, oldest first.
	MessagesAfter(ctx context.Context, roomID, after ID, limit int) ([]Message, error)
}

// HistoryQuery asks for a room's messages in a time range, oldest first.
type HistoryQuery struct {
	RoomID ID
	From   time.Time // inclusive; zero: unbounded
	To     time.Time // exclusive; zero: unbounded
	Limit  int
	Cursor string // opaque, from a previous page's NextCursor
}

// HistoryPage is one page of history. NextCursor is "" on the last page.
type HistoryPage struct {
	Messages   []Message
	NextCursor string
}

// SearchQuery is a full-text search. RoomIDs are the rooms to search in; the
// caller has already restricted them to rooms the user may read, and an
// empty list matches nothing.
type SearchQuery struct {
	Text    string // user syntax: words (all must match), "phrases", prefix*
	RoomIDs []ID
	UserID  ID        // only messages by this user; 0: any
	From    time.Time // inclusive; zero: unbounded
	To      time.Time // exclusive; zero: unbounded
	Limit   int
	Cursor  string
}

// SearchHit is one match: the message and its body as HTML with every match
// wrapped in <mark>…</mark> and everything else escaped.
type SearchHit struct {
	Message   Message `json:"message"`
	Highlight string  `json:"highlight"`
}

// SearchResult is one page of hits, best match first.
type SearchResult struct {
	Hits []SearchHit
	// Total counts the matches up to MaxSearchTotal; TotalRelation says
	// whether it is exact (TotalEq) or a lower bound (TotalGte: more
	// matched).
	Total         int64
	TotalRelation string
	NextCursor    string
}

// MaxSearchTotal is how far search counts matches, and how deep its paging
// goes: Elasticsearch's default track_total_hits and max_result_window.
// Counting every match of a common word cost hundreds of milliseconds over
// a million messages, for a number nobody pages to the end of.
const MaxSearchTotal = 10_000

// SearchResult.TotalRelation values, Elasticsearch's names.
const (
	TotalEq  = "eq"  // Total is the exact count
	TotalGte = "gte" // at least Total matched (Total is MaxSearchTotal)
)

// SearchIndex serves history and full-text search (SQLite FTS5, Elasticsearch).
type SearchIndex interface {
	// IndexMessages adds msgs; indexing an ID twice changes nothing.
	IndexMessages(ctx context.Context, msgs []Message) error
	History(ctx context.Context, q HistoryQuery) (HistoryPage, error)
	Search(ctx context.Context, q SearchQuery) (SearchResult, error)
}

// Log is the durable message log between ingest and the store and index
// roles (JetStream embedded, Kafka distributed).
type Log interface {
	// Append writes msgs durably, keeping their order within a room. When it
	// returns nil every message will be delivered to every consumer group.
	Append(ctx context.Context, msgs []Message) error
	// Consume delivers batches of messages to handle under the named
	// consumer group until ctx ends, then returns nil. A batch is committed
	// only after handle returns nil; otherwise it is delivered again after a
	// backoff, so a message is never skipped. Consumers of one group share
	// the work.
	Consume(ctx context.Context, group string, handle func(context.Context, []Message) error) error
	// Lag returns how many appended log entries the group has not
	// committed: 0 once it has committed everything. An entry holds one
	// message (Kafka) or several consecutive ones (JetStream).
	Lag(ctx context.Context, group string) (int64, error)
}
