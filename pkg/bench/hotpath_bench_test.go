package bench_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// Go benchmarks of hot paths reachable from outside their packages:
//
//	go test -run '^$' -bench . -benchmem ./pkg/bench

func sampleMessage() chat.Message {
	return chat.Message{
		ID: 123456789012345678, RoomID: 98765432109876543, UserID: 1234567890123456,
		Username: "ann", Body: strings.Repeat("x", 100),
		CreatedAt: time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC), Nonce: "n-1",
	}
}

// BenchmarkMessageJSON is the encoding/json of a chat.Message (its
// MarshalJSON), the bulk of every message frame.
func BenchmarkMessageJSON(b *testing.B) {
	m := sampleMessage()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageFrame encodes a whole {"type":"message","message":...}
// frame, as a gateway does once per room (or per connection, if it does not
// share the bytes).
func BenchmarkMessageFrame(b *testing.B) {
	f := struct {
		Type    string       `json:"type"`
		Message chat.Message `json:"message"`
	}{"message", sampleMessage()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageDecode is the client side: parsing a message object.
func BenchmarkMessageDecode(b *testing.B) {
	raw, _ := json.Marshal(sampleMessage())
	b.ReportAllocs()
	for b.Loop() {
		var m chat.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIDGenNext(b *testing.B) {
	g, err := chat.NewIDGen(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Next()
	}
}

func BenchmarkIDGenNextParallel(b *testing.B) {
	g, err := chat.NewIDGen(1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Next()
		}
	})
}
