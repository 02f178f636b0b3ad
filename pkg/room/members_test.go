package room_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/room"
	"github.com/chatd/chatd/pkg/sqlite"
)

// users is the user role as seen from the room role: it knows every
// account but the ones in missing.
type users struct{ missing map[chat.ID]bool }

func (u users) User(_ context.Context, id chat.ID) (chat.User, error) {
	if u.missing[id] {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	return chat.User{ID: id, Username: "u" + id.String(), Email: "secret@example.com"}, nil
}

func (users) UserByName(context.Context, string) (chat.User, error) {
	return chat.User{}, chat.Errorf(chat.ENOTFOUND, "user not found")
}

// A member the user role does not know is left out of the list without
// cutting a page short: paging by the last ID returned still reaches every
// other member, full pages first. No e-mail address leaves the room role.
func TestMembersSkipsUnknownAccountsWithoutShortPages(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.OpenAccounts(ctx, filepath.Join(t.TempDir(), "a.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const owner, roomID = chat.ID(1), chat.ID(1000)
	if err := store.CreateRoom(ctx, chat.Room{ID: roomID, Name: "r", Private: true, OwnerID: owner, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for id := chat.ID(2); id <= 10; id++ {
		if err := store.AddMember(ctx, roomID, id); err != nil {
			t.Fatal(err)
		}
	}
	s := room.New(store, users{missing: map[chat.ID]bool{2: true, 3: true, 7: true}}, nil, nil, nil)
	var got []chat.ID
	var after chat.ID
	for page := 0; page < 10; page++ {
		list, err := s.Members(ctx, owner, roomID, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list {
			if u.Email != "" {
				t.Fatalf("member %d listed with an e-mail address", u.ID)
			}
			got = append(got, u.ID)
		}
		if len(list) < 3 {
			break
		}
		after = list[len(list)-1].ID
	}
	want := []chat.ID{1, 4, 5, 6, 8, 9, 10}
	if len(got) != len(want) {
		t.Fatalf("members %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("members %v; want %v", got, want)
		}
	}
}
