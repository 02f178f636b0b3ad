// Package room is the room role: rooms, private membership and the access
// checks every other role relies on.
package room

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/chatd/chatd/pkg/chat"
)

// Users finds accounts (the user role).
type Users interface {
	User(ctx context.Context, id chat.ID) (chat.User, error)
	UserByName(ctx context.Context, username string) (chat.User, error)
}

// Service implements chat.RoomService.
type Service struct {
	store  chat.RoomStore
	users  Users
	events chat.EventPublisher
	ids    *chat.IDGen
	log    *slog.Logger
}

var _ chat.RoomService = (*Service)(nil)

// New returns the room role.
func New(store chat.RoomStore, users Users, events chat.EventPublisher, ids *chat.IDGen, log *slog.Logger) *Service {
	return &Service{store: store, users: users, events: events, ids: ids, log: log}
}

func notFound() error { return chat.Errorf(chat.ENOTFOUND, "room not found") }

func validateName(name string) (string, error) {
	if err := chat.ValidateText("name", name, chat.MaxRoomNameLen); err != nil {
		return "", err
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", chat.Errorf(chat.EINVALID, "name must not be empty")
	}
	return name, nil
}

// CreateRoom implements chat.RoomService.
func (s *Service) CreateRoom(ctx context.Context, caller chat.ID, name, description string, private bool) (chat.Room, error) {
	name, err := validateName(name)
	if err != nil {
		return chat.Room{}, err
	}
	if err := chat.ValidateText("description", description, chat.MaxRoomDescLen); err != nil {
		return chat.Room{}, err
	}
	id, now := s.ids.Next()
	r := chat.Room{ID: id, Name: name, Description: description, Private: private, OwnerID: caller, CreatedAt: now}
	if err := s.store.CreateRoom(ctx, r); err != nil {
		return chat.Room{}, err
	}
	s.log.Info("room created", "room_id", r.ID, "owner_id", caller, "private", private)
	return r, nil
}

// visible returns the room if the user may see it; a private room the user
// is not in is reported exactly like a missing one.
func (s *Service) visible(ctx context.Context, userID, roomID chat.ID) (chat.Room, error) {
	r, err := s.store.Room(ctx, roomID)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		return chat.Room{}, notFound()
	}
	if err != nil {
		return chat.Room{}, err
	}
	if !r.Private || r.OwnerID == userID {
		return r, nil
	}
	ok, err := s.store.IsMember(ctx, roomID, userID)
	if err != nil {
		return chat.Room{}, err
	}
	if !ok {
		return chat.Room{}, notFound()
	}
	return r, nil
}

// Room implements chat.RoomService.
func (s *Service) Room(ctx context.Context, caller, roomID chat.ID) (chat.Room, error) {
	return s.visible(ctx, caller, roomID)
}

// ListRooms implements chat.RoomService.
func (s *Service) ListRooms(ctx context.Context, caller chat.ID) ([]chat.Room, error) {
	return s.store.ListRooms(ctx, caller)
}

func (s *Service) owned(ctx context.Context, caller, roomID chat.ID) (chat.Room, error) {
	r, err := s.visible(ctx, caller, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	if r.OwnerID != caller {
		return chat.Room{}, chat.Errorf(chat.EFORBIDDEN, "only the room's owner may do this")
	}
	return r, nil
}

// UpdateRoom implements chat.RoomService.
func (s *Service) UpdateRoom(ctx context.Context, caller, roomID chat.ID, u chat.RoomUpdate) (chat.Room, error) {
	r, err := s.owned(ctx, caller, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	if u.Name != nil {
		if r.Name, err = validateName(*u.Name); err != nil {
			return chat.Room{}, err
		}
	}
	if u.Description != nil {
		if err := chat.ValidateText("description", *u.Description, chat.MaxRoomDescLen); err != nil {
			return chat.Room{}, err
		}
		r.Description = *u.Description
	}
	if err := s.store.UpdateRoom(ctx, r); err != nil {
		return chat.Room{}, err
	}
	return r, nil
}

// DeleteRoom implements chat.RoomService.
func (s *Service) DeleteRoom(ctx context.Context, caller, roomID chat.ID) error {
	if _, err := s.owned(ctx, caller, roomID); err != nil {
		return err
	}
	if err := s.store.DeleteRoom(ctx, roomID); err != nil {
		return err
	}
	s.log.Info("room deleted", "room_id", roomID)
	return s.publish(chat.ControlEvent{Type: chat.EventRoomDeleted, RoomID: roomID})
}

// AddMember implements chat.RoomService.
func (s *Service) AddMember(ctx context.Context, caller, roomID chat.ID, username string) error {
	if _, err := s.owned(ctx, caller, roomID); err != nil {
		return err
	}
	u, err := s.users.UserByName(ctx, username)
	if err != nil {
		return err
	}
	return s.store.AddMember(ctx, roomID, u.ID)
}

// RemoveMember implements chat.RoomService.
func (s *Service) RemoveMember(ctx context.Context, caller, roomID, userID chat.ID) error {
	r, err := s.visible(ctx, caller, roomID)
	if err != nil {
		return err
	}
	if caller != r.OwnerID && caller != userID {
		return chat.Errorf(chat.EFORBIDDEN, "only the owner may remove other members")
	}
	if userID == r.OwnerID {
		return chat.Errorf(chat.ECONFLICT, "the owner cannot leave the room; delete it instead")
	}
	err = s.store.RemoveMember(ctx, roomID, userID)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		if !r.Private && caller == userID {
			// Leaving a public room one never formally joined is a no-op,
			// not an error: anyone may read a public room.
			err = nil
		} else {
			return chat.Errorf(chat.ENOTFOUND, "not a member of this room")
		}
	}
	if err != nil {
		return err
	}
	return s.publish(chat.ControlEvent{Type: chat.EventMemberRemoved, RoomID: roomID, UserID: userID})
}

// Members implements chat.RoomService.
func (s *Service) Members(ctx context.Context, caller, roomID, after chat.ID, limit int) ([]chat.User, error) {
	if _, err := s.visible(ctx, caller, roomID); err != nil {
		return nil, err
	}
	users := make([]chat.User, 0, limit)
	for len(users) < limit {
		want := limit - len(users)
		ids, err := s.store.Members(ctx, roomID, after, want)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			after = id
			u, err := s.users.User(ctx, id)
			if chat.ErrorCode(err) == chat.ENOTFOUND {
				// The user role may run on another account store than
				// the room role: a member it does not know is left out,
				// and the page is filled from the next ones, so a
				// client's paging does not stop short at it.
				continue
			}
			if err != nil {
				return nil, err
			}
			u.Email = "" // members see each other's public profile only
			users = append(users, u)
		}
		if len(ids) < want {
			break // no more members
		}
	}
	return users, nil
}

// CheckAccess implements chat.RoomService.
func (s *Service) CheckAccess(ctx context.Context, userID, roomID chat.ID) error {
	_, err := s.visible(ctx, userID, roomID)
	return err
}

// ReadableRooms implements chat.RoomService.
func (s *Service) ReadableRooms(ctx context.Context, userID chat.ID) ([]chat.ID, error) {
	rooms, err := s.store.ListRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	ids := make([]chat.ID, len(rooms))
	for i, r := range rooms {
		ids[i] = r.ID
	}
	return ids, nil
}

func (s *Service) publish(e chat.ControlEvent) error {
	if s.events == nil {
		return nil
	}
	if err := s.events.PublishControl(e); err != nil {
		return fmt.Errorf("publish %s: %w", e.Type, err)
	}
	return nil
}
