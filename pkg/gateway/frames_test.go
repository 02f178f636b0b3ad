package gateway

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/chatd/chatd/pkg/chat"
)

// ackFrame is the ack frame's shape, which ackJSON must encode exactly as
// encoding/json would.
type ackFrame struct {
	Type    string       `json:"type"`
	Nonce   string       `json:"nonce"`
	Message chat.Message `json:"message"`
}

func reflectAck(t testing.TB, nonce string, m chat.Message) string {
	b, err := json.Marshal(ackFrame{Type: typeAck, Nonce: nonce, Message: m})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAckJSONMatchesEncodingJSON(t *testing.T) {
	edited := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for name, c := range map[string]struct {
		nonce string
		m     chat.Message
	}{
		"plain":     {"n1", chat.Message{ID: 1, RoomID: 2, UserID: 3, Username: "ann", Body: "hello", CreatedAt: time.Unix(1, 5), Nonce: "n1"}},
		"no nonce":  {"", chat.Message{ID: 1, Body: "x"}},
		"edited":    {"e", chat.Message{ID: 1, Body: "x", EditedAt: &edited, Nonce: "e"}},
		"hostile":   {"<\"\\\x00\u2028>&", chat.Message{Body: "</script>\n\xff", Username: "\xc3", Nonce: "<\"\\\x00\u2028>&"}},
		"bad utf8":  {"\xed\xa0\x80", chat.Message{Nonce: "\xed\xa0\x80"}},
		"long body": {"n", chat.Message{Body: string(make([]byte, 70000))}},
	} {
		if got, want := string(ackJSON(c.nonce, c.m.JSON())), reflectAck(t, c.nonce, c.m); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func FuzzAckJSON(f *testing.F) {
	f.Add("n1", "hello", "ann", int64(1), int64(0))
	f.Add("\x00<\xff", "a\u2028<>&\"\\\x00\xff", "\xc3", int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, nonce, body, username string, id, nanos int64) {
		m := chat.Message{ID: chat.ID(id), RoomID: chat.ID(id ^ 7), UserID: chat.ID(nanos), Username: username, Body: body, Nonce: nonce, CreatedAt: time.Unix(0, nanos)}
		if got, want := string(ackJSON(nonce, m.JSON())), reflectAck(t, nonce, m); got != want {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAckJSON(b *testing.B) {
	m := chat.Message{ID: 123456789012345, RoomID: 98765432109876, UserID: 5555555555, Username: "someone", Body: "a 100-byte message body, as the benchmarks send, with nothing to escape in it at all....", CreatedAt: time.Now(), Nonce: "n-123456"}
	b.Run("ackJSON", func(b *testing.B) {
		for b.Loop() {
			_ = ackJSON(m.Nonce, m.JSON())
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			_ = mustJSON(ackFrame{Type: typeAck, Nonce: m.Nonce, Message: m})
		}
	})
}

// sameAsJSON checks that scanFrame, when it takes b, reads what
// json.Unmarshal reads.
func sameAsJSON(t *testing.T, b []byte) (scanned bool) {
	t.Helper()
	if !utf8.Valid(b) {
		return false // parseRequest refuses it first
	}
	got, ok := scanFrame(b)
	if !ok {
		return false
	}
	var want inFrame
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%q: scanned, but json.Unmarshal fails: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n scanned %s\n    json %s", b, show(got), show(want))
	}
	return true
}

func show(f inFrame) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestScanFrame(t *testing.T) {
	for _, c := range []struct {
		frame   string
		scanned bool
	}{
		{`{"type":"send","room_id":"123","body":"hello","nonce":"n-1"}`, true},
		{` { "type" : "join" , "room_id" : "5", "since": "99" } `, true},
		{"{\n\t\"type\":\"ping\"\r\n}", true},
		{`{}`, true},
		{`{"nonce":"","body":""}`, true},
		{`{"type":"send","body":"ünï 🎉 <b>&amp;</b>"}`, true},
		{`{"room_id":"000000000000000042"}`, true},
		// To encoding/json.
		{`{"type":"send","body":"line\nbreak"}`, false},
		{`{"type":"send","body":"tab` + "\t" + `"}`, false},
		{`{"room_id":5}`, false},
		{`{"room_id":""}`, false},
		{`{"room_id":"-5"}`, false},
		{`{"room_id":"+5"}`, false},
		{`{"room_id":"1234567890123456789"}`, false},
		{`{"room_id":"99999999999999999999"}`, false},
		{`{"room_id":null}`, false},
		{`{"Type":"send"}`, false},
		{`{"type":"a","type":"b"}`, false},
		{`{"extra":"x","type":"ping"}`, false},
		{`{"type":"send","body":["x"]}`, false},
		{`{"type":"send",}`, false},
		{`{"type":"send"} x`, false},
		{`{"type":"send"`, false},
		{`{"type"}`, false},
		{`[]`, false},
		{``, false},
		{`"type"`, false},
		{`{"ty\u0070e":"ping"}`, false},
	} {
		if got := sameAsJSON(t, []byte(c.frame)); got != c.scanned {
			t.Errorf("%q: scanned %v, want %v", c.frame, got, c.scanned)
		}
	}
}

func FuzzScanFrame(f *testing.F) {
	f.Add([]byte(`{"type":"send","room_id":"123","body":"hello","nonce":"n-1"}`))
	f.Add([]byte(` { "type" : "join" , "room_id" : "5", "since": "99" } `))
	f.Add([]byte(`{"room_id":"1234567890123456789"}`))
	f.Add([]byte(`{"type":"a","type":"b"}`))
	f.Fuzz(func(t *testing.T, b []byte) { sameAsJSON(t, b) })
}

func BenchmarkParseSend(b *testing.B) {
	frame := []byte(`{"type":"send","room_id":"7385729384729384","body":"a 100-byte message body, as the benchmarks send, with nothing to escape in it at all....","nonce":"n-123456-42"}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseRequest(websocket.MessageText, frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f inFrame
			if err := json.Unmarshal(frame, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
