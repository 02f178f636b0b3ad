package chat

import (
	"encoding/json"
	"time"
)

// TimeFormat is the wire form of timestamps: RFC 3339, UTC, always with
// nanoseconds, so clients can compare them as strings.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime renders t in TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// User is an account. The password hash and email never leave the user role.
type User struct {
	ID          ID
	Username    string
	DisplayName string
	Email       string
	CreatedAt   time.Time
}

type userJSON struct {
	ID          ID     `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// MarshalJSON writes the public user object of API.md.
func (u User) MarshalJSON() ([]byte, error) {
	return json.Marshal(userJSON{u.ID, u.Username, u.DisplayName, FormatTime(u.CreatedAt)})
}

// UnmarshalJSON reads the public user object.
func (u *User) UnmarshalJSON(b []byte) error {
	var j userJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := parseTime(j.CreatedAt)
	if err != nil {
		return err
	}
	*u = User{ID: j.ID, Username: j.Username, DisplayName: j.DisplayName, CreatedAt: t}
	return nil
}

// Session is a login. Only the SHA-256 of its token is stored, so a leaked
// database does not hand out live sessions.
type Session struct {
	TokenHash string // hex SHA-256 of the bearer token
	UserID    ID
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Caller is the authenticated user of a request or connection.
type Caller struct {
	User      User
	TokenHash string
	ExpiresAt time.Time
}

// Room is a chat room. A private room is visible only to its members.
type Room struct {
	ID          ID
	Name        string
	Description string
	Private     bool
	OwnerID     ID
	CreatedAt   time.Time
}

type roomJSON struct {
	ID          ID     `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Private     bool   `json:"private"`
	OwnerID     ID     `json:"owner_id"`
	CreatedAt   string `json:"created_at"`
}

// MarshalJSON writes the public room object of API.md.
func (r Room) MarshalJSON() ([]byte, error) {
	return json.Marshal(roomJSON{r.ID, r.Name, r.Description, r.Private, r.OwnerID, FormatTime(r.CreatedAt)})
}

// UnmarshalJSON reads the public room object.
func (r *Room) UnmarshalJSON(b []byte) error {
	var j roomJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := parseTime(j.CreatedAt)
	if err != nil {
		return err
	}
	*r = Room{ID: j.ID, Name: j.Name, Description: j.Description, Private: j.Private, OwnerID: j.OwnerID, CreatedAt: t}
	return nil
}

// Message is one chat message. Body is kept byte-for-byte as sent.
type Message struct {
	ID        ID
	RoomID    ID
	UserID    ID
	Username  string
	Body      string
	CreatedAt time.Time
	Nonce     string     // client's idempotency key, optional
	EditedAt  *time.Time // nil unless edited
}

type messageJSON struct {
	ID        ID      `json:"id"`
	RoomID    ID      `json:"room_id"`
	UserID    ID      `json:"user_id"`
	Username  string  `json:"username"`
	Body      string  `json:"body"`
	CreatedAt string  `json:"created_at"`
	Nonce     string  `json:"nonce,omitempty"`
	EditedAt  *string `json:"edited_at,omitempty"`
}

// MarshalJSON writes the public message object of API.md.
func (m Message) MarshalJSON() ([]byte, error) {
	return m.JSON(), nil
}

// UnmarshalJSON reads the public message object.
func (m *Message) UnmarshalJSON(b []byte) error {
	var j messageJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	t, err := parseTime(j.CreatedAt)
	if err != nil {
		return err
	}
	*m = Message{ID: j.ID, RoomID: j.RoomID, UserID: j.UserID, Username: j.Username, Body: j.Body, CreatedAt: t, Nonce: j.Nonce}
	if j.EditedAt != nil {
		e, err := parseTime(*j.EditedAt)
		if err != nil {
			return err
		}
		m.EditedAt = &e
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}
