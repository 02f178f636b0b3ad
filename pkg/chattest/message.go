package chattest

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// MessageStore runs the conformance suite of chat.MessageStore.
func MessageStore(t *testing.T, open func(t *testing.T) chat.MessageStore) {
	t.Run("LatestOldestFirst", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room, other := nextID(g), nextID(g)
		var all []chat.Message
		var batch []chat.Message
		for i := range 25 {
			m := newMessage(g, room, 1, fmt.Sprintf("message %d", i))
			all = append(all, m)
			// Interleave another room, which must never leak in.
			batch = append(batch, m, newMessage(g, other, 2, fmt.Sprintf("other %d", i)))
		}
		noErr(t, "WriteMessages", s.WriteMessages(ctx, batch))

		got, err := s.MessagesBefore(ctx, room, 0, 10)
		noErr(t, "MessagesBefore", err)
		checkMessages(t, "MessagesBefore(0, 10)", got, all[15:])

		got, err = s.MessagesBefore(ctx, room, 0, 100)
		noErr(t, "MessagesBefore", err)
		checkMessages(t, "MessagesBefore(0, 100)", got, all)

		got, err = s.MessagesBefore(ctx, room, all[10].ID, 3)
		noErr(t, "MessagesBefore", err)
		checkMessages(t, "MessagesBefore(10th, 3)", got, all[7:10])

		got, err = s.MessagesBefore(ctx, room, all[0].ID, 10)
		noErr(t, "MessagesBefore", err)
		checkMessages(t, "MessagesBefore(first)", got, nil)

		got, err = s.MessagesBefore(ctx, nextID(g), 0, 10)
		noErr(t, "MessagesBefore empty room", err)
		checkMessages(t, "MessagesBefore empty room", got, nil)
	})

	t.Run("PageBackwards", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		var all []chat.Message
		for i := range 23 {
			all = append(all, newMessage(g, room, 1, fmt.Sprintf("m%d", i)))
		}
		// Written in several batches, out of order across batches.
		noErr(t, "WriteMessages", s.WriteMessages(ctx, all[10:]))
		noErr(t, "WriteMessages", s.WriteMessages(ctx, all[:10]))
		var got []chat.Message
		before := chat.ID(0)
		for range 10 {
			page, err := s.MessagesBefore(ctx, room, before, 5)
			noErr(t, "MessagesBefore", err)
			if len(page) == 0 {
				break
			}
			got = append(page, got...)
			before = page[0].ID
		}
		checkMessages(t, "paging backwards", got, all)
	})

	t.Run("After", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room, other := nextID(g), nextID(g)
		var all []chat.Message
		for i := range 17 {
			all = append(all, newMessage(g, room, 1, fmt.Sprintf("m%d", i)))
		}
		noErr(t, "WriteMessages", s.WriteMessages(ctx, all))
		noErr(t, "WriteMessages other", s.WriteMessages(ctx, []chat.Message{newMessage(g, other, 1, "x")}))
		got, err := s.MessagesAfter(ctx, room, 0, 5)
		noErr(t, "MessagesAfter", err)
		checkMessages(t, "MessagesAfter(0, 5)", got, all[:5])
		got, err = s.MessagesAfter(ctx, room, all[5].ID, 3)
		noErr(t, "MessagesAfter", err)
		checkMessages(t, "MessagesAfter(5th, 3)", got, all[6:9])
		got, err = s.MessagesAfter(ctx, room, all[16].ID, 3)
		noErr(t, "MessagesAfter", err)
		checkMessages(t, "MessagesAfter(last)", got, nil)

		var paged []chat.Message
		after := chat.ID(0)
		for range 10 {
			page, err := s.MessagesAfter(ctx, room, after, 4)
			noErr(t, "MessagesAfter", err)
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].ID
		}
		checkMessages(t, "paging forwards", paged, all)
	})

	t.Run("Idempotent", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		a, b := newMessage(g, room, 1, "a"), newMessage(g, room, 1, "b")
		noErr(t, "WriteMessages", s.WriteMessages(ctx, []chat.Message{a, a, b}))
		noErr(t, "WriteMessages again", s.WriteMessages(ctx, []chat.Message{b, a}))
		noErr(t, "WriteMessages again", s.WriteMessages(ctx, []chat.Message{a}))
		got, err := s.MessagesBefore(ctx, room, 0, 10)
		noErr(t, "MessagesBefore", err)
		checkMessages(t, "after redelivery", got, []chat.Message{a, b})
		noErr(t, "WriteMessages empty", s.WriteMessages(ctx, nil))
	})

	t.Run("Bodies", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		var want []chat.Message
		for i, body := range trickyBodies {
			m := newMessage(g, room, chat.ID(i+1), body)
			m.Username = fmt.Sprintf("user.%d_-x", i)
			if i%2 == 0 {
				m.Nonce = fmt.Sprintf("nonce-%d \"'<>", i)
			}
			if i%3 == 0 {
				e := m.CreatedAt.Add(time.Duration(i) * time.Second)
				m.EditedAt = &e
			}
			want = append(want, m)
		}
		noErr(t, "WriteMessages", s.WriteMessages(ctx, want))
		got, err := s.MessagesAfter(ctx, room, 0, len(want)+5)
		noErr(t, "MessagesAfter", err)
		checkMessages(t, "bodies", got, want)
	})

	t.Run("BadLimit", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		room := nextID(g)
		noErr(t, "WriteMessages", s.WriteMessages(ctx, []chat.Message{newMessage(g, room, 1, "x")}))
		// A store may refuse a limit it cannot honour or return nothing;
		// it must not fail as if broken.
		for _, limit := range []int{0, -1} {
			msgs, err := s.MessagesBefore(ctx, room, 0, limit)
			if code := chat.ErrorCode(err); code != "" && code != chat.EINVALID || len(msgs) > 0 {
				t.Fatalf("MessagesBefore limit %d: %d messages, %v", limit, len(msgs), err)
			}
			msgs, err = s.MessagesAfter(ctx, room, 0, limit)
			if code := chat.ErrorCode(err); code != "" && code != chat.EINVALID || len(msgs) > 0 {
				t.Fatalf("MessagesAfter limit %d: %d messages, %v", limit, len(msgs), err)
			}
		}
	})
}
