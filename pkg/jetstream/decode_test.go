package jetstream

import (
	"encoding/json"
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
