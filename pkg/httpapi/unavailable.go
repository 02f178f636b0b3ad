package httpapi

import (
	"context"
	"log/slog"

	"github.com/chatd/chatd/pkg/chat"
)

// fillDeps replaces each nil dependency with one that answers 503, logging
// once at start-up which role is missing.
func fillDeps(d Deps, log *slog.Logger) Deps {
	if d.Users == nil {
		log.Warn("no user role: account endpoints answer 503")
		d.Users = unavailable{}
	}
	if d.Rooms == nil {
		log.Warn("no room role: room endpoints answer 503")
		d.Rooms = unavailable{}
	}
	if d.Query == nil {
		log.Warn("no query role: read endpoints answer 503")
		d.Query = unavailable{}
	}
	if d.Poster == nil {
		log.Warn("no poster: posting answers 503")
		d.Poster = unavailable{}
	}
	return d
}

// unavailable implements every dependency by failing with EUNAVAILABLE.
type unavailable struct{}

var (
	_ Users  = unavailable{}
	_ Rooms  = unavailable{}
	_ Query  = unavailable{}
	_ Poster = unavailable{}
)

func errUnavailable() error { return chat.Errorf(chat.EUNAVAILABLE, "service unavailable") }

func (unavailable) Register(context.Context, string, string, string, string) (chat.User, error) {
	return chat.User{}, errUnavailable()
}

func (unavailable) Login(context.Context, string, string) (string, chat.Session, chat.User, error) {
	return "", chat.Session{}, chat.User{}, errUnavailable()
}
func (unavailable) Logout(context.Context, string) error { return errUnavailable() }
func (unavailable) Authenticate(context.Context, string) (chat.Caller, error) {
	return chat.Caller{}, errUnavailable()
}
func (unavailable) User(context.Context, chat.ID) (chat.User, error) {
	return chat.User{}, errUnavailable()
}

func (unavailable) CreateRoom(context.Context, chat.ID, string, string, bool) (chat.Room, error) {
	return chat.Room{}, errUnavailable()
}
func (unavailable) Room(context.Context, chat.ID, chat.ID) (chat.Room, error) {
	return chat.Room{}, errUnavailable()
}
func (unavailable) ListRooms(context.Context, chat.ID) ([]chat.Room, error) {
	return nil, errUnavailable()
}
func (unavailable) UpdateRoom(context.Context, chat.ID, chat.ID, chat.RoomUpdate) (chat.Room, error) {
	return chat.Room{}, errUnavailable()
}
func (unavailable) DeleteRoom(context.Context, chat.ID, chat.ID) error { return errUnavailable() }
func (unavailable) AddMember(context.Context, chat.ID, chat.ID, string) error {
	return errUnavailable()
}
func (unavailable) RemoveMember(context.Context, chat.ID, chat.ID, chat.ID) error {
	return errUnavailable()
}
func (unavailable) Members(context.Context, chat.ID, chat.ID, chat.ID, int) ([]chat.User, error) {
	return nil, errUnavailable()
}
func (unavailable) CheckAccess(context.Context, chat.ID, chat.ID) error { return errUnavailable() }
func (unavailable) ReadableRooms(context.Context, chat.ID) ([]chat.ID, error) {
	return nil, errUnavailable()
}

func (unavailable) Latest(context.Context, chat.ID, chat.ID, chat.ID, int) ([]chat.Message, error) {
	return nil, errUnavailable()
}
func (unavailable) Since(context.Context, chat.ID, chat.ID, chat.ID, int) ([]chat.Message, bool, error) {
	return nil, false, errUnavailable()
}
func (unavailable) History(context.Context, chat.ID, chat.HistoryQuery) (chat.HistoryPage, error) {
	return chat.HistoryPage{}, errUnavailable()
}
func (unavailable) Search(context.Context, chat.ID, chat.SearchQuery) (chat.SearchResult, error) {
	return chat.SearchResult{}, errUnavailable()
}

func (unavailable) Post(context.Context, chat.Caller, chat.ID, string, string) (chat.Message, error) {
	return chat.Message{}, errUnavailable()
}
