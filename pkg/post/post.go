// Package post is the one send path shared by the REST API and the
// WebSocket: validate, check access, apply the per-user rate limit, then
// hand the message to ingest and wait for the durable ack.
package post

import (
	"context"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/redis"
)

// Limiter takes one event from a named bucket (pkg/redis).
type Limiter interface {
	Allow(ctx context.Context, key string, l redis.Limit) (time.Duration, error)
}

// Poster posts messages.
type Poster struct {
	rooms   chat.RoomService
	limiter Limiter
	limit   redis.Limit // zero Rate: no limit
	sender  chat.Sender
	encoded chat.EncodedSender // sender, if it returns the message's JSON too

	onAck     func(time.Duration) // ack latency of successful sends
	onLimited func()              // a send refused by the rate limit
}

// Observe sets hooks for metrics: ack receives the time from handing a send
// to ingest until its durable ack; limited is called per refused send.
func (p *Poster) Observe(ack func(time.Duration), limited func()) {
	p.onAck, p.onLimited = ack, limited
}

// New returns a Poster. A zero limit.Rate turns rate limiting off.
func New(rooms chat.RoomService, limiter Limiter, limit redis.Limit, sender chat.Sender) *Poster {
	p := &Poster{rooms: rooms, limiter: limiter, limit: limit, sender: sender}
	p.encoded, _ = sender.(chat.EncodedSender)
	return p
}

// Post validates and sends one message, returning it once durable.
func (p *Poster) Post(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, error) {
	m, _, err := p.PostEncoded(ctx, caller, roomID, body, nonce)
	return m, err
}

// PostEncoded is Post that also returns the message's JSON (Message.JSON):
// the in-process ingest's own encoding, else encoded here.
func (p *Poster) PostEncoded(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, []byte, error) {
	if err := chat.ValidateBody(body); err != nil {
		return chat.Message{}, nil, err
	}
	if err := chat.ValidateNonce(nonce); err != nil {
		return chat.Message{}, nil, err
	}
	if err := p.rooms.CheckAccess(ctx, caller.User.ID, roomID); err != nil {
		return chat.Message{}, nil, err
	}
	if p.limit.Rate > 0 {
		wait, err := p.limiter.Allow(ctx, "send:"+caller.User.ID.String(), p.limit)
		if err != nil {
			return chat.Message{}, nil, err
		}
		if wait > 0 {
			if p.onLimited != nil {
				p.onLimited()
			}
			return chat.Message{}, nil, &chat.Error{Code: chat.ERATELIMITED, Message: "sending too fast; slow down", RetryAfterMillis: max(wait.Milliseconds(), 1)}
		}
	}
	start := time.Now()
	r := chat.SendRequest{RoomID: roomID, UserID: caller.User.ID, Username: caller.User.Username, Body: body, Nonce: nonce}
	var m chat.Message
	var raw []byte
	var err error
	if p.encoded != nil {
		m, raw, err = p.encoded.SendEncoded(ctx, r)
	} else {
		m, err = p.sender.Send(ctx, r)
	}
	if err != nil {
		return chat.Message{}, nil, err
	}
	if p.onAck != nil {
		p.onAck(time.Since(start))
	}
	if raw == nil {
		raw = m.JSON()
	}
	return m, raw, nil
}
