package rpc

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatd/chatd/pkg/chat"
	pb "github.com/chatd/chatd/pkg/rpc/chatdv1"
)

// Conversions between domain and wire types. They are lossless: what the
// service returns in one process is what the caller gets in another, down to
// the nanosecond and to nil versus empty slices.

// ts encodes t; the zero time is left unset, since Timestamp's range starts
// at year 1 but proto's zero value would otherwise read back as 1970.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTS(p *timestamppb.Timestamp) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.AsTime()
}

func userToPB(u chat.User) *pb.User {
	return &pb.User{Id: int64(u.ID), Username: u.Username, DisplayName: u.DisplayName, Email: u.Email, CreatedAt: ts(u.CreatedAt)}
}

func userFromPB(p *pb.User) chat.User {
	if p == nil {
		return chat.User{}
	}
	return chat.User{ID: chat.ID(p.GetId()), Username: p.GetUsername(), DisplayName: p.GetDisplayName(), Email: p.GetEmail(), CreatedAt: fromTS(p.GetCreatedAt())}
}

func sessionToPB(s chat.Session) *pb.Session {
	return &pb.Session{TokenHash: s.TokenHash, UserId: int64(s.UserID), CreatedAt: ts(s.CreatedAt), ExpiresAt: ts(s.ExpiresAt)}
}

func sessionFromPB(p *pb.Session) chat.Session {
	if p == nil {
		return chat.Session{}
	}
	return chat.Session{TokenHash: p.GetTokenHash(), UserID: chat.ID(p.GetUserId()), CreatedAt: fromTS(p.GetCreatedAt()), ExpiresAt: fromTS(p.GetExpiresAt())}
}

func callerToPB(c chat.Caller) *pb.Caller {
	return &pb.Caller{User: userToPB(c.User), TokenHash: c.TokenHash, ExpiresAt: ts(c.ExpiresAt)}
}

func callerFromPB(p *pb.Caller) chat.Caller {
	if p == nil {
		return chat.Caller{}
	}
	return chat.Caller{User: userFromPB(p.GetUser()), TokenHash: p.GetTokenHash(), ExpiresAt: fromTS(p.GetExpiresAt())}
}

func roomToPB(r chat.Room) *pb.Room {
	return &pb.Room{Id: int64(r.ID), Name: r.Name, Description: r.Description, Private: r.Private, OwnerId: int64(r.OwnerID), CreatedAt: ts(r.CreatedAt)}
}

func roomFromPB(p *pb.Room) chat.Room {
	if p == nil {
		return chat.Room{}
	}
	return chat.Room{ID: chat.ID(p.GetId()), Name: p.GetName(), Description: p.GetDescription(), Private: p.GetPrivate(), OwnerID: chat.ID(p.GetOwnerId()), CreatedAt: fromTS(p.GetCreatedAt())}
}

func roomsToPB(rs []chat.Room) ([]*pb.Room, bool) {
	if rs == nil {
		return nil, true
	}
	out := make([]*pb.Room, len(rs))
	for i, r := range rs {
		out[i] = roomToPB(r)
	}
	return out, false
}

func roomsFromPB(ps []*pb.Room, isNil bool) []chat.Room {
	if isNil {
		return nil
	}
	out := make([]chat.Room, len(ps))
	for i, p := range ps {
		out[i] = roomFromPB(p)
	}
	return out
}

func messageToPB(m chat.Message) *pb.Message {
	p := &pb.Message{Id: int64(m.ID), RoomId: int64(m.RoomID), UserId: int64(m.UserID), Username: m.Username, Body: m.Body, CreatedAt: ts(m.CreatedAt), Nonce: m.Nonce}
	if m.EditedAt != nil {
		// An edit time is set even when it is the zero time, so presence
		// alone carries "edited".
		p.EditedAt = timestamppb.New(*m.EditedAt)
	}
	return p
}

func messageFromPB(p *pb.Message) chat.Message {
	if p == nil {
		return chat.Message{}
	}
	m := chat.Message{ID: chat.ID(p.GetId()), RoomID: chat.ID(p.GetRoomId()), UserID: chat.ID(p.GetUserId()), Username: p.GetUsername(), Body: p.GetBody(), CreatedAt: fromTS(p.GetCreatedAt()), Nonce: p.GetNonce()}
	if p.EditedAt != nil {
		t := p.EditedAt.AsTime()
		m.EditedAt = &t
	}
	return m
}

func messagesToPB(ms []chat.Message) ([]*pb.Message, bool) {
	if ms == nil {
		return nil, true
	}
	out := make([]*pb.Message, len(ms))
	for i, m := range ms {
		out[i] = messageToPB(m)
	}
	return out, false
}

func messagesFromPB(ps []*pb.Message, isNil bool) []chat.Message {
	if isNil {
		return nil
	}
	out := make([]chat.Message, len(ps))
	for i, p := range ps {
		out[i] = messageFromPB(p)
	}
	return out
}

func idsToPB(ids []chat.ID) ([]int64, bool) {
	if ids == nil {
		return nil, true
	}
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out, false
}

func idsFromPB(ps []int64, isNil bool) []chat.ID {
	if isNil {
		return nil
	}
	out := make([]chat.ID, len(ps))
	for i, p := range ps {
		out[i] = chat.ID(p)
	}
	return out
}

func hitsToPB(hs []chat.SearchHit) ([]*pb.SearchHit, bool) {
	if hs == nil {
		return nil, true
	}
	out := make([]*pb.SearchHit, len(hs))
	for i, h := range hs {
		out[i] = &pb.SearchHit{Message: messageToPB(h.Message), Highlight: h.Highlight}
	}
	return out, false
}

func hitsFromPB(ps []*pb.SearchHit, isNil bool) []chat.SearchHit {
	if isNil {
		return nil
	}
	out := make([]chat.SearchHit, len(ps))
	for i, p := range ps {
		out[i] = chat.SearchHit{Message: messageFromPB(p.GetMessage()), Highlight: p.GetHighlight()}
	}
	return out
}

// optBytes encodes an optional string as a proto3 optional bytes field,
// whose presence is a non-nil slice: an empty string present stays present.
func optBytes(s *string) []byte {
	if s == nil {
		return nil
	}
	return append([]byte{}, *s...)
}

func optString(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}
