package chat

import (
	"encoding/json"
	"testing"
	"time"
)

// reflectJSON is the encoding/json form of m, which AppendJSON must match.
func reflectJSON(t testing.TB, m Message) string {
	j := messageJSON{m.ID, m.RoomID, m.UserID, m.Username, m.Body, FormatTime(m.CreatedAt), m.Nonce, nil}
	if m.EditedAt != nil {
		s := FormatTime(*m.EditedAt)
		j.EditedAt = &s
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	edited := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	for name, m := range map[string]Message{
		"plain":      {ID: 1, RoomID: 2, UserID: 3, Username: "ann", Body: "hello", CreatedAt: time.Unix(1, 5)},
		"zero":       {},
		"negative":   {ID: -9, RoomID: -1 << 63, UserID: 1<<63 - 1},
		"nonce":      {ID: 1, Body: "x", Nonce: "n-1"},
		"edited":     {ID: 1, Body: "x", EditedAt: &edited, CreatedAt: edited},
		"escapes":    {Body: "\"quote\" \\ back / slash\n\r\t\b\f\x00\x01\x1f\x7f"},
		"html":       {Body: "<script>alert('x') && y</script>"},
		"unicode":    {Body: "héllo wörld ☃ 😀 日本語", Username: "ü"},
		"separators": {Body: "a\u2028b\u2029c"},
		"bad utf8":   {Body: "a\xffb\xc3(c\xe2\x82", Nonce: "\xed\xa0\x80"},
		"nul nonce":  {Nonce: "\x00"},
	} {
		got := string(m.AppendJSON(nil))
		if want := reflectJSON(t, m); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		b, err := json.Marshal(m)
		if err != nil || string(b) != got {
			t.Errorf("%s: json.Marshal %s (%v), want %s", name, b, err, got)
		}
	}
	// Appends, not overwrites.
	if got := string(Message{}.AppendJSON([]byte("x"))); got[0] != 'x' || got[1:] != reflectJSON(t, Message{}) {
		t.Errorf("prefix lost: %s", got)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("hello", "ann", "n1", int64(1), int64(0))
	f.Add("a\u2028<>&\"\\\x00\xff", "\xc3", "", int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, body, username, nonce string, id, nanos int64) {
		m := Message{ID: ID(id), RoomID: ID(id ^ 7), UserID: ID(nanos), Username: username, Body: body, Nonce: nonce, CreatedAt: time.Unix(0, nanos)}
		if got, want := string(m.AppendJSON(nil)), reflectJSON(t, m); got != want {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkMessageJSON(b *testing.B) {
	m := Message{ID: 123456789012345, RoomID: 98765432109876, UserID: 5555555555, Username: "someone", Body: "a 100-byte message body, as the benchmarks send, with nothing to escape in it at all....", CreatedAt: time.Now(), Nonce: "n-123456"}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = m.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(m)
		}
	})
}
