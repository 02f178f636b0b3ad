package jetstream

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// sameAsUnmarshal checks decodeMessage against json.Unmarshal on b.
func sameAsUnmarshal(t testing.TB, b []byte) {
	t.Helper()
	var want chat.Message
	wantErr := json.Unmarshal(b, &want)
	got, err := decodeMessage(b)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, json.Unmarshal %v", b, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", b, got, want)
	}
}

func TestDecodeMessage(t *testing.T) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	edited := at.Add(time.Minute)
	for _, m := range []chat.Message{
		{ID: 1, RoomID: 2, UserID: 3, Username: "ann", Body: "hello", CreatedAt: at},
		{ID: 1<<62 + 5, RoomID: 7, UserID: 8, Username: "bob", Body: "with nonce", CreatedAt: at, Nonce: "n-1"},
		{ID: 1, RoomID: 2, UserID: 3, Body: "escapes \" \\ \n \t <b>&</b> \u2028", CreatedAt: at},
		{ID: 1, RoomID: 2, UserID: 3, Body: "ünïcödé 🎉 日本", Username: "ü", CreatedAt: at},
		{ID: 1, RoomID: 2, UserID: 3, Body: "edited", CreatedAt: at, EditedAt: &edited},
		{ID: 1, RoomID: 2, UserID: 3, Body: "bad \xff utf8", CreatedAt: at},
		{Body: "zero"},
	} {
		b := m.AppendJSON(nil)
		sameAsUnmarshal(t, b)
		if _, ok := scanMessage(b); !ok && !strings.ContainsAny(m.Body, "\"\\\n\t<>&\u2028\xff") && m.EditedAt == nil && !m.CreatedAt.IsZero() {
			t.Errorf("canonical entry %s took the slow path", b)
		}
	}
	for _, raw := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"id":"1"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"} `,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}x`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"not a time"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":""}`,
		`{"id":"-1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":"99999999999999999999","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":"","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":1,"room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"room_id":"2","id":"1","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09+02:00","nonce":"n"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z","nonce":"n","extra":1}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b\u0041","created_at":"2031-05-06T07:08:09Z"}`,
		"{\"id\":\"1\",\"room_id\":\"2\",\"user_id\":\"3\",\"username\":\"a\",\"body\":\"tab\there\",\"created_at\":\"2031-05-06T07:08:09Z\"}",
		"{\"id\":\"1\",\"room_id\":\"2\",\"user_id\":\"3\",\"username\":\"a\",\"body\":\"\xff\",\"created_at\":\"2031-05-06T07:08:09Z\"}",
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"unterminated,"created_at":"2031-05-06T07:08:09Z"}`,
		`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z","nonce":"n"`,
		`{"type":"room_deleted"}`,
	} {
		sameAsUnmarshal(t, []byte(raw))
	}
}

func FuzzDecodeMessage(f *testing.F) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	f.Add(chat.Message{ID: 1, RoomID: 2, UserID: 3, Username: "ann", Body: "hello", CreatedAt: at, Nonce: "n"}.AppendJSON(nil))
	f.Add([]byte(`{"id":"1","room_id":"2","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`))
	f.Add([]byte(`{"id":"1","room_id":"2"`))
	f.Fuzz(func(t *testing.T, b []byte) { sameAsUnmarshal(t, b) })
}

func BenchmarkDecodeMessage(b *testing.B) {
	raw := chat.Message{ID: 123456789012345, RoomID: 98765432109876, UserID: 5555555555, Username: "someone",
		Body: "a 100-byte message body, as the benchmarks send, with nothing to escape in it at all....", CreatedAt: time.Now(), Nonce: "n-123456"}.AppendJSON(nil)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeMessage(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			var m chat.Message
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Entries written by entry decode back to the messages they hold, for any
// mix of bodies, and appendEntry never keeps a message without an ID or a
// room.
func TestEntryRoundTrip(t *testing.T) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	l := &Log{cfg: LogConfig{EntryMessages: 64}}
	var msgs []chat.Message
	for i := range 150 {
		body := fmt.Sprintf("message %d", i)
		switch i % 5 {
		case 1:
			body = "line one\nline two \"quoted\" \\ \u2028"
		case 2:
			body = strings.Repeat("\x01", 4000) // 24,000 bytes escaped
		}
		msgs = append(msgs, chat.Message{ID: chat.ID(1000 + i), RoomID: chat.ID(1 + i%3), UserID: 9, Username: "ann", Body: body, CreatedAt: at, Nonce: fmt.Sprint("n", i)})
	}
	var got []chat.Message
	entries := 0
	for rest := msgs; len(rest) > 0; entries++ {
		data, n := l.entry(rest)
		if n < 1 || n > 64 || (n > 1 && len(data) > maxEntryBytes) {
			t.Fatalf("entry of %d messages, %d bytes", n, len(data))
		}
		var bad int
		var err error
		if got, bad, err = appendEntry(got, data); bad != 0 {
			t.Fatalf("entry %d: %d bad lines: %v", entries, bad, err)
		}
		rest = rest[n:]
	}
	if !reflect.DeepEqual(got, msgs) {
		t.Fatalf("round trip lost or changed messages: %d of %d back", len(got), len(msgs))
	}
	if entries < 3 {
		t.Fatalf("150 messages, 30 of them 24 KB, in %d entries", entries)
	}

	ok := string(msgs[0].AppendJSON(nil))
	for _, c := range []struct {
		entry     string
		good, bad int
	}{
		{ok, 1, 0},
		{ok + "\n" + ok, 2, 0},
		{ok + "\n", 1, 0},
		{"\n\n" + ok + "\n\n", 1, 0},
		{"", 0, 1},
		{"\n", 0, 1},
		{"not json", 0, 1},
		{ok + "\nnot json\n{}\n" + ok, 2, 2},
		{`{"id":"1","room_id":"0","user_id":"3","username":"a","body":"b","created_at":"2031-05-06T07:08:09Z"}`, 0, 1},
		{"[" + ok + "]", 0, 1},
	} {
		got, bad, err := appendEntry([]chat.Message{msgs[5]}, []byte(c.entry))
		if len(got) != 1+c.good || bad != c.bad || (bad > 0) != (err != nil) {
			t.Errorf("%q: %d messages, %d bad (%v); want %d, %d", c.entry, len(got)-1, bad, err, c.good, c.bad)
		}
		if got[0].ID != msgs[5].ID {
			t.Errorf("%q: changed the messages before it", c.entry)
		}
	}
}

func FuzzAppendEntry(f *testing.F) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	one := chat.Message{ID: 1, RoomID: 2, UserID: 3, Username: "ann", Body: "hello", CreatedAt: at}.AppendJSON(nil)
	f.Add(one)
	f.Add(append(append(one, '\n'), one...))
	f.Add([]byte("x\n\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, bad, err := appendEntry(nil, b)
		if (bad > 0) != (err != nil) || (len(got) == 0 && bad == 0) {
			t.Fatalf("%q: %d messages, %d bad, err %v", b, len(got), bad, err)
		}
		for _, m := range got {
			if m.ID <= 0 || m.RoomID <= 0 {
				t.Fatalf("%q: kept %+v", b, m)
			}
		}
	})
}
