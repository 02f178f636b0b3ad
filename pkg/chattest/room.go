package chattest

import (
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// RoomStore runs the conformance suite of chat.RoomStore.
func RoomStore(t *testing.T, open func(t *testing.T) chat.RoomStore) {
	t.Run("CreateAndRead", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		owner := nextID(g)
		r := chat.Room{ID: nextID(g), Name: "général 🎉", Description: "<b>desc</b> 'quoted'\nline", Private: true, OwnerID: owner,
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
		noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		got, err := s.Room(ctx, r.ID)
		noErr(t, "Room", err)
		checkRoom(t, "Room", got, r)
		ok, err := s.IsMember(ctx, r.ID, owner)
		noErr(t, "IsMember", err)
		if !ok {
			t.Fatal("the owner of a new room is not a member")
		}
		ok, err = s.IsMember(ctx, r.ID, nextID(g))
		noErr(t, "IsMember stranger", err)
		if ok {
			t.Fatal("a stranger is a member")
		}
		_, err = s.Room(ctx, nextID(g))
		wantCode(t, "Room missing", err, chat.ENOTFOUND)
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		r := chat.Room{ID: nextID(g), Name: "old", Description: "old desc", OwnerID: nextID(g), CreatedAt: time.Now().UTC()}
		noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		r.Name, r.Description = "new ✓", ""
		noErr(t, "UpdateRoom", s.UpdateRoom(ctx, r))
		got, err := s.Room(ctx, r.ID)
		noErr(t, "Room", err)
		checkRoom(t, "Room after update", got, r)
		noErr(t, "UpdateRoom unchanged", s.UpdateRoom(ctx, r))
		err = s.UpdateRoom(ctx, chat.Room{ID: nextID(g), Name: "x"})
		wantCode(t, "UpdateRoom missing", err, chat.ENOTFOUND)
	})

	t.Run("Delete", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		owner, member := nextID(g), nextID(g)
		r := chat.Room{ID: nextID(g), Name: "doomed", Private: true, OwnerID: owner, CreatedAt: time.Now()}
		other := chat.Room{ID: nextID(g), Name: "survivor", Private: true, OwnerID: owner, CreatedAt: time.Now()}
		noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		noErr(t, "CreateRoom other", s.CreateRoom(ctx, other))
		noErr(t, "AddMember", s.AddMember(ctx, r.ID, member))
		noErr(t, "DeleteRoom", s.DeleteRoom(ctx, r.ID))
		_, err := s.Room(ctx, r.ID)
		wantCode(t, "Room deleted", err, chat.ENOTFOUND)
		for _, u := range []chat.ID{owner, member} {
			ok, err := s.IsMember(ctx, r.ID, u)
			noErr(t, "IsMember", err)
			if ok {
				t.Fatal("membership survived its room")
			}
		}
		ok, err := s.IsMember(ctx, other.ID, owner)
		noErr(t, "IsMember other", err)
		if !ok {
			t.Fatal("deleting one room removed a membership of another")
		}
		wantCode(t, "DeleteRoom twice", s.DeleteRoom(ctx, r.ID), chat.ENOTFOUND)
		wantCode(t, "AddMember to deleted room", s.AddMember(ctx, r.ID, member), chat.ENOTFOUND)
	})

	t.Run("Members", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		owner, u := nextID(g), nextID(g)
		r := chat.Room{ID: nextID(g), Name: "club", Private: true, OwnerID: owner, CreatedAt: time.Now()}
		noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		noErr(t, "AddMember", s.AddMember(ctx, r.ID, u))
		noErr(t, "AddMember twice", s.AddMember(ctx, r.ID, u))
		ok, err := s.IsMember(ctx, r.ID, u)
		noErr(t, "IsMember", err)
		if !ok {
			t.Fatal("added member is not a member")
		}
		noErr(t, "RemoveMember", s.RemoveMember(ctx, r.ID, u))
		ok, err = s.IsMember(ctx, r.ID, u)
		noErr(t, "IsMember", err)
		if ok {
			t.Fatal("removed member is still a member")
		}
		wantCode(t, "RemoveMember twice", s.RemoveMember(ctx, r.ID, u), chat.ENOTFOUND)
		wantCode(t, "RemoveMember never a member", s.RemoveMember(ctx, r.ID, nextID(g)), chat.ENOTFOUND)
		wantCode(t, "RemoveMember missing room", s.RemoveMember(ctx, nextID(g), u), chat.ENOTFOUND)
		wantCode(t, "AddMember missing room", s.AddMember(ctx, nextID(g), u), chat.ENOTFOUND)
	})

	t.Run("ListMembers", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		owner := nextID(g)
		r := chat.Room{ID: nextID(g), Name: "big", Private: true, OwnerID: owner, CreatedAt: time.Now()}
		other := chat.Room{ID: nextID(g), Name: "other", Private: true, OwnerID: owner, CreatedAt: time.Now()}
		noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		noErr(t, "CreateRoom other", s.CreateRoom(ctx, other))
		want := []chat.ID{owner}
		for range 7 {
			u := nextID(g)
			noErr(t, "AddMember", s.AddMember(ctx, r.ID, u))
			want = append(want, u)
		}
		noErr(t, "AddMember other", s.AddMember(ctx, other.ID, nextID(g)))
		slices.Sort(want)
		// Pages of 3 follow each other by the last ID, and end empty.
		var got []chat.ID
		var after chat.ID
		for range 10 {
			page, err := s.Members(ctx, r.ID, after, 3)
			noErr(t, "Members", err)
			if len(page) > 3 {
				t.Fatalf("page of %d members; limit 3", len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("members %v; want %v", got, want)
		}
		noErr(t, "RemoveMember", s.RemoveMember(ctx, r.ID, want[1]))
		all, err := s.Members(ctx, r.ID, 0, 100)
		noErr(t, "Members after remove", err)
		if slices.Contains(all, want[1]) || len(all) != len(want)-1 {
			t.Fatalf("members after removing %d: %v", want[1], all)
		}
		none, err := s.Members(ctx, nextID(g), 0, 100)
		noErr(t, "Members of a missing room", err)
		if len(none) != 0 {
			t.Fatalf("a missing room has members %v", none)
		}
	})

	t.Run("List", func(t *testing.T) {
		s, ctx, g := open(t), ctxOf(t), newIDGen(t)
		alice, bob, carol := nextID(g), nextID(g), nextID(g)
		pub1 := chat.Room{ID: nextID(g), Name: "public 1", OwnerID: alice, CreatedAt: time.Now()}
		privA := chat.Room{ID: nextID(g), Name: "alice only", Private: true, OwnerID: alice, CreatedAt: time.Now()}
		privB := chat.Room{ID: nextID(g), Name: "bob and carol", Private: true, OwnerID: bob, CreatedAt: time.Now()}
		pub2 := chat.Room{ID: nextID(g), Name: "public 2", OwnerID: bob, CreatedAt: time.Now()}
		// Created out of ID order: the list must still come in ID order.
		for _, r := range []chat.Room{pub2, privB, pub1, privA} {
			noErr(t, "CreateRoom", s.CreateRoom(ctx, r))
		}
		noErr(t, "AddMember", s.AddMember(ctx, privB.ID, carol))
		list := func(user chat.ID) []chat.ID {
			rooms, err := s.ListRooms(ctx, user)
			noErr(t, "ListRooms", err)
			out := []chat.ID{}
			for _, r := range rooms {
				out = append(out, r.ID)
			}
			return out
		}
		stranger := nextID(g)
		want := map[chat.ID][]chat.ID{
			alice:    {pub1.ID, privA.ID, pub2.ID},
			bob:      {pub1.ID, privB.ID, pub2.ID},
			carol:    {pub1.ID, privB.ID, pub2.ID},
			stranger: {pub1.ID, pub2.ID},
		}
		for u, w := range want {
			slices.Sort(w)
			if got := list(u); !slices.Equal(got, w) {
				t.Fatalf("ListRooms(%d) = %v, want %v", u, got, w)
			}
		}
		rooms, err := s.ListRooms(ctx, alice)
		noErr(t, "ListRooms", err)
		for _, r := range rooms {
			if r.ID == privA.ID {
				checkRoom(t, "listed room", r, privA)
			}
		}
		noErr(t, "RemoveMember", s.RemoveMember(ctx, privB.ID, carol))
		if got := list(carol); slices.Contains(got, privB.ID) {
			t.Fatalf("ListRooms after removal still lists the private room: %v", got)
		}
	})
}

func checkRoom(tb testing.TB, what string, got, want chat.Room) {
	tb.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Description != want.Description ||
		got.Private != want.Private || got.OwnerID != want.OwnerID || !sameTime(got.CreatedAt, want.CreatedAt) {
		tb.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}
