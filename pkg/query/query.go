// Package query is the query role: latest messages from the message store,
// history and search from the search index, each after an access check.
package query

import (
	"cmp"
	"context"
	"log/slog"
	"slices"

	"github.com/chatd/chatd/pkg/chat"
)

// Recent is the window of recently acknowledged messages (pkg/redis), which
// covers what the store writer has not caught up with yet.
type Recent interface {
	RecentAfter(ctx context.Context, room, after chat.ID) ([]chat.Message, error)
	RecentBefore(ctx context.Context, room, before chat.ID, limit int) ([]chat.Message, error)
}

// Service implements chat.QueryService.
type Service struct {
	rooms  chat.RoomService
	store  chat.MessageStore
	index  chat.SearchIndex
	recent Recent
	log    *slog.Logger
}

var _ chat.QueryService = (*Service)(nil)

// New returns the query role. recent may be nil.
func New(rooms chat.RoomService, store chat.MessageStore, index chat.SearchIndex, recent Recent, log *slog.Logger) *Service {
	return &Service{rooms: rooms, store: store, index: index, recent: recent, log: log}
}

func clampLimit(limit, def, max int) int {
	if limit <= 0 {
		return def
	}
	return min(limit, max)
}

// recentAfter reads the window, degrading to the store alone if Redis is
// unreachable: a read should not fail because a cache did.
func (s *Service) recentAfter(ctx context.Context, room, after chat.ID) []chat.Message {
	if s.recent == nil {
		return nil
	}
	ms, err := s.recent.RecentAfter(ctx, room, after)
	if err != nil {
		s.log.Warn("recent window unavailable", "room_id", room, "err", err)
		return nil
	}
	return ms
}

// merge returns the union of a and b by ID, ascending.
func merge(a, b []chat.Message) []chat.Message {
	if len(b) == 0 {
		return a
	}
	out := make([]chat.Message, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.SortFunc(out, func(x, y chat.Message) int { return cmp.Compare(x.ID, y.ID) })
	return slices.CompactFunc(out, func(x, y chat.Message) bool { return x.ID == y.ID })
}

// Latest implements chat.QueryService.
func (s *Service) Latest(ctx context.Context, userID, roomID, before chat.ID, limit int) ([]chat.Message, error) {
	if err := s.rooms.CheckAccess(ctx, userID, roomID); err != nil {
		return nil, err
	}
	limit = clampLimit(limit, 50, chat.MaxPageLimit)
	stored, err := s.store.MessagesBefore(ctx, roomID, before, limit)
	if err != nil {
		return nil, err
	}
	var recent []chat.Message
	if s.recent != nil {
		var err error
		if recent, err = s.recent.RecentBefore(ctx, roomID, before, limit); err != nil {
			s.log.Warn("recent window unavailable", "room_id", roomID, "err", err)
			recent = nil
		}
	}
	all := merge(stored, recent)
	if len(all) > limit {
		all = all[len(all)-limit:]
	}
	return all, nil
}

// Since implements chat.QueryService.
func (s *Service) Since(ctx context.Context, userID, roomID, since chat.ID, limit int) ([]chat.Message, bool, error) {
	if err := s.rooms.CheckAccess(ctx, userID, roomID); err != nil {
		return nil, false, err
	}
	limit = clampLimit(limit, chat.MaxSinceReplay, chat.MaxSinceReplay)
	stored, err := s.store.MessagesAfter(ctx, roomID, since, limit+1)
	if err != nil {
		return nil, false, err
	}
	all := merge(stored, s.recentAfter(ctx, roomID, since))
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}

// History implements chat.QueryService.
func (s *Service) History(ctx context.Context, userID chat.ID, q chat.HistoryQuery) (chat.HistoryPage, error) {
	if err := s.rooms.CheckAccess(ctx, userID, q.RoomID); err != nil {
		return chat.HistoryPage{}, err
	}
	q.Limit = clampLimit(q.Limit, 50, chat.MaxPageLimit)
	return s.index.History(ctx, q)
}

// Search implements chat.QueryService.
func (s *Service) Search(ctx context.Context, userID chat.ID, q chat.SearchQuery) (chat.SearchResult, error) {
	readable, err := s.rooms.ReadableRooms(ctx, userID)
	if err != nil {
		return chat.SearchResult{}, err
	}
	if len(q.RoomIDs) > 0 {
		allowed := make(map[chat.ID]bool, len(readable))
		for _, id := range readable {
			allowed[id] = true
		}
		for _, id := range q.RoomIDs {
			if !allowed[id] {
				return chat.SearchResult{}, chat.Errorf(chat.ENOTFOUND, "room not found")
			}
		}
	} else {
		q.RoomIDs = readable
	}
	q.Limit = clampLimit(q.Limit, 20, chat.MaxPageLimit)
	return s.index.Search(ctx, q)
}
