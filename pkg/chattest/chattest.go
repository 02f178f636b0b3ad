// Package chattest holds the conformance suites of the backend interfaces of
// package chat. Every implementation runs the suite of each interface it
// implements, so the embedded and the distributed backends behave alike:
//
//	func TestMessageStore(t *testing.T) {
//		chattest.MessageStore(t, func(t *testing.T) chat.MessageStore { return openFresh(t) })
//	}
//
// open must return a fresh, empty store each call (a unique schema,
// keyspace or index is fine) and arrange its cleanup with t.Cleanup.
package chattest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// Bodies that must survive every store byte for byte.
var trickyBodies = []string{
	"hello",
	"emoji 🎉👩‍👩‍👧‍👦🏳️‍🌈 and flags 🇫🇷",
	"RTL: שלום עולם — مرحبا بالعالم",
	"<script>alert('x')</script> <img src=x onerror=alert(1)> &amp; &lt;",
	`quotes "double" 'single' ` + "`back`",
	`backslashes \ \\ \n \" \u0000 C:\path\to`,
	"new\nlines\r\nand\ttabs\n",
	"  leading and trailing spaces  ",
	"combining e\u0301 and zero\u200bwidth and \u202eoverride",
	"SQL ' OR 1=1; DROP TABLE messages; -- %_ ",
	"{\"json\": [1, 2, 3]}",
	strings.Repeat("x", chat.MaxBodyChars),
	strings.Repeat("é", chat.MaxBodyChars),
	strings.Repeat("🎉", chat.MaxBodyChars),
}

func newIDGen(tb testing.TB) *chat.IDGen {
	tb.Helper()
	g, err := chat.NewIDGen(7)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func nextID(g *chat.IDGen) chat.ID {
	id, _ := g.Next()
	return id
}

// newMessage returns a message with a fresh ID and its time.
func newMessage(g *chat.IDGen, room, user chat.ID, body string) chat.Message {
	id, at := g.Next()
	return chat.Message{ID: id, RoomID: room, UserID: user, Username: "user" + user.String(), Body: body, CreatedAt: at}
}

// messageAt returns a message whose ID stands for time at (plus seq), for
// tests of time ranges, which generated IDs, all made within a few
// milliseconds, cannot exercise.
func messageAt(at time.Time, seq int, room, user chat.ID, body string) chat.Message {
	return chat.Message{
		ID: chat.MinIDAt(at) + chat.ID(seq), RoomID: room, UserID: user,
		Username: "user" + user.String(), Body: body, CreatedAt: at.UTC(),
	}
}

func ctxOf(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func wantCode(tb testing.TB, what string, err error, code string) {
	tb.Helper()
	if got := chat.ErrorCode(err); got != code {
		tb.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func noErr(tb testing.TB, what string, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// sameTime reports whether a stored time came back as t: in UTC, and equal
// to within a microsecond, the precision of PostgreSQL's timestamptz.
func sameTime(got, want time.Time) bool {
	if want.IsZero() {
		return got.IsZero()
	}
	d := got.Sub(want)
	return got.Location() == time.UTC && d < time.Microsecond && d > -time.Microsecond
}

func checkMessage(tb testing.TB, what string, got, want chat.Message) {
	tb.Helper()
	if got.ID != want.ID || got.RoomID != want.RoomID || got.UserID != want.UserID ||
		got.Username != want.Username || got.Nonce != want.Nonce {
		tb.Fatalf("%s: got message %d room %d user %d %q nonce %q, want %d room %d user %d %q nonce %q", what,
			got.ID, got.RoomID, got.UserID, got.Username, got.Nonce,
			want.ID, want.RoomID, want.UserID, want.Username, want.Nonce)
	}
	if got.Body != want.Body {
		tb.Fatalf("%s: message %d body %.60q (%d bytes), want %.60q (%d bytes)", what, got.ID, got.Body, len(got.Body), want.Body, len(want.Body))
	}
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		tb.Fatalf("%s: message %d created_at %v, want %v in UTC", what, got.ID, got.CreatedAt, want.CreatedAt)
	}
	if (got.EditedAt == nil) != (want.EditedAt == nil) || got.EditedAt != nil && !sameTime(*got.EditedAt, *want.EditedAt) {
		tb.Fatalf("%s: message %d edited_at %v, want %v", what, got.ID, got.EditedAt, want.EditedAt)
	}
}

func checkMessages(tb testing.TB, what string, got, want []chat.Message) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: got %d messages %v, want %d %v", what, len(got), ids(got), len(want), ids(want))
	}
	for i := range got {
		checkMessage(tb, what, got[i], want[i])
	}
}

func ids(msgs []chat.Message) []chat.ID {
	out := make([]chat.ID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// eventually polls check until it reports true or about ten seconds pass,
// for backends whose reads lag their writes (Elasticsearch's refresh). The
// pause between polls only paces the polling; it decides nothing.
func eventually(tb testing.TB, what string, check func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	pause := 10 * time.Millisecond
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still not true after 10s: %s", what, last)
		}
		time.Sleep(pause)
		pause = min(2*pause, 500*time.Millisecond)
	}
}
