package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// In-memory stand-ins for the roles, with the access rules of API.md, so the
// tests exercise the HTTP mapping of every outcome. The real services have
// their own tests; end-to-end tests against the program live elsewhere.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

type memUsers struct {
	mu       sync.Mutex
	next     chat.ID
	users    map[chat.ID]chat.User
	byName   map[string]chat.ID
	password map[chat.ID]string
	sessions map[string]chat.Caller // by token hash
}

func newMemUsers() *memUsers {
	return &memUsers{next: 100, users: map[chat.ID]chat.User{}, byName: map[string]chat.ID{},
		password: map[chat.ID]string{}, sessions: map[string]chat.Caller{}}
}

// add creates a user with a fixed ID and an open session for token.
func (m *memUsers) add(id chat.ID, name, password, token string) chat.User {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := chat.User{ID: id, Username: name, DisplayName: strings.ToUpper(name[:1]) + name[1:], CreatedAt: t0}
	m.users[id], m.byName[name], m.password[id] = u, id, password
	if token != "" {
		m.sessions[hashToken(token)] = chat.Caller{User: u, TokenHash: hashToken(token), ExpiresAt: t0.Add(24 * time.Hour)}
	}
	return u
}

func (m *memUsers) Register(_ context.Context, username, password, displayName, _ string) (chat.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byName[username]; ok {
		return chat.User{}, chat.Errorf(chat.ECONFLICT, "username is taken")
	}
	m.next++
	u := chat.User{ID: m.next, Username: username, DisplayName: displayName, CreatedAt: t0}
	m.users[u.ID], m.byName[username], m.password[u.ID] = u, u.ID, password
	return u, nil
}

func (m *memUsers) Login(_ context.Context, username, password string) (string, chat.Session, chat.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byName[username]
	if !ok || m.password[id] != password {
		return "", chat.Session{}, chat.User{}, chat.Errorf(chat.EUNAUTHENTICATED, "invalid username or password")
	}
	m.next++
	tok := fmt.Sprintf("session-token-%d", m.next)
	s := chat.Session{TokenHash: hashToken(tok), UserID: id, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	m.sessions[s.TokenHash] = chat.Caller{User: m.users[id], TokenHash: s.TokenHash, ExpiresAt: s.ExpiresAt}
	return tok, s, m.users[id], nil
}

func (m *memUsers) Logout(_ context.Context, tokenHash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, tokenHash)
	return nil
}

func (m *memUsers) Authenticate(_ context.Context, token string) (chat.Caller, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.sessions[hashToken(token)]
	if !ok {
		return chat.Caller{}, chat.Errorf(chat.EUNAUTHENTICATED, "invalid or expired session")
	}
	return c, nil
}

func (m *memUsers) User(_ context.Context, id chat.ID) (chat.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	return u, nil
}

func (m *memUsers) idOf(name string) (chat.ID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byName[name]
	return id, ok
}

type memRooms struct {
	mu      sync.Mutex
	users   *memUsers
	next    chat.ID
	rooms   map[chat.ID]chat.Room
	members map[chat.ID]map[chat.ID]bool
	fail    error // returned by every call when set
}

func newMemRooms(users *memUsers) *memRooms {
	return &memRooms{users: users, next: 500, rooms: map[chat.ID]chat.Room{}, members: map[chat.ID]map[chat.ID]bool{}}
}

func (m *memRooms) add(r chat.Room, members ...chat.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.CreatedAt = t0
	m.rooms[r.ID] = r
	m.members[r.ID] = map[chat.ID]bool{r.OwnerID: true}
	for _, id := range members {
		m.members[r.ID][id] = true
	}
}

var errNoRoom = chat.Errorf(chat.ENOTFOUND, "room not found")

// visible returns the room if caller may see it; m.mu must be held.
func (m *memRooms) visible(caller, id chat.ID) (chat.Room, error) {
	if m.fail != nil {
		return chat.Room{}, m.fail
	}
	r, ok := m.rooms[id]
	if !ok || (r.Private && !m.members[id][caller]) {
		return chat.Room{}, errNoRoom
	}
	return r, nil
}

func (m *memRooms) CreateRoom(_ context.Context, caller chat.ID, name, desc string, private bool) (chat.Room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return chat.Room{}, m.fail
	}
	m.next++
	r := chat.Room{ID: m.next, Name: name, Description: desc, Private: private, OwnerID: caller, CreatedAt: t0}
	m.rooms[r.ID] = r
	m.members[r.ID] = map[chat.ID]bool{caller: true}
	return r, nil
}

func (m *memRooms) Room(_ context.Context, caller, id chat.ID) (chat.Room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.visible(caller, id)
}

func (m *memRooms) ListRooms(_ context.Context, caller chat.ID) ([]chat.Room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []chat.Room
	for id := range m.rooms {
		if r, err := m.visible(caller, id); err == nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b chat.Room) int { return int(a.ID - b.ID) })
	return out, nil
}

func (m *memRooms) UpdateRoom(_ context.Context, caller, id chat.ID, u chat.RoomUpdate) (chat.Room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.visible(caller, id)
	if err != nil {
		return chat.Room{}, err
	}
	if r.OwnerID != caller {
		return chat.Room{}, chat.Errorf(chat.EFORBIDDEN, "only the owner may change the room")
	}
	if u.Name != nil {
		r.Name = *u.Name
	}
	if u.Description != nil {
		r.Description = *u.Description
	}
	m.rooms[id] = r
	return r, nil
}

func (m *memRooms) DeleteRoom(_ context.Context, caller, id chat.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.visible(caller, id)
	if err != nil {
		return err
	}
	if r.OwnerID != caller {
		return chat.Errorf(chat.EFORBIDDEN, "only the owner may delete the room")
	}
	delete(m.rooms, id)
	delete(m.members, id)
	return nil
}

func (m *memRooms) AddMember(_ context.Context, caller, id chat.ID, username string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.visible(caller, id)
	if err != nil {
		return err
	}
	if r.OwnerID != caller {
		return chat.Errorf(chat.EFORBIDDEN, "only the owner may add members")
	}
	uid, ok := m.users.idOf(username)
	if !ok {
		return chat.Errorf(chat.ENOTFOUND, "user not found")
	}
	m.members[id][uid] = true
	return nil
}

func (m *memRooms) RemoveMember(_ context.Context, caller, id, user chat.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.visible(caller, id)
	if err != nil {
		return err
	}
	if r.OwnerID != caller && caller != user {
		return chat.Errorf(chat.EFORBIDDEN, "only the owner may remove other members")
	}
	if !m.members[id][user] {
		return chat.Errorf(chat.ENOTFOUND, "not a member")
	}
	delete(m.members[id], user)
	return nil
}

func (m *memRooms) Members(ctx context.Context, caller, id, after chat.ID, limit int) ([]chat.User, error) {
	m.mu.Lock()
	if _, err := m.visible(caller, id); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	var ids []chat.ID
	for u := range m.members[id] {
		if u > after {
			ids = append(ids, u)
		}
	}
	m.mu.Unlock()
	slices.Sort(ids)
	var out []chat.User
	for _, u := range ids[:min(limit, len(ids))] {
		usr, err := m.users.User(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, usr)
	}
	return out, nil
}

func (m *memRooms) CheckAccess(_ context.Context, user, id chat.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.visible(user, id)
	return err
}

func (m *memRooms) ReadableRooms(_ context.Context, user chat.ID) ([]chat.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []chat.ID
	for id := range m.rooms {
		if _, err := m.visible(user, id); err == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// memMessages is the message store, query role and poster in one.
type memMessages struct {
	mu          sync.Mutex
	rooms       *memRooms
	next        chat.ID
	msgs        []chat.Message // in ID order
	rateLimited bool
	lastQuery   any // the last History/Search query, for argument checks
	// searchCap > 0 makes Search count as far as that ("gte" beyond);
	// otherwise it counts exactly and leaves TotalRelation empty, like a
	// query server that predates the field.
	searchCap int64
}

func newMemMessages(rooms *memRooms) *memMessages {
	return &memMessages{rooms: rooms, next: 9000}
}

func (m *memMessages) add(room chat.ID, user chat.User, id chat.ID, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, chat.Message{ID: id, RoomID: room, UserID: user.ID, Username: user.Username, Body: body,
		CreatedAt: t0.Add(time.Duration(id) * time.Second)})
	slices.SortFunc(m.msgs, func(a, b chat.Message) int { return int(a.ID - b.ID) })
}

func (m *memMessages) Latest(ctx context.Context, user, room, before chat.ID, limit int) ([]chat.Message, error) {
	if err := m.rooms.CheckAccess(ctx, user, room); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []chat.Message
	for _, msg := range m.msgs {
		if msg.RoomID == room && (before == 0 || msg.ID < before) {
			out = append(out, msg)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func (m *memMessages) Since(ctx context.Context, user, room, since chat.ID, limit int) ([]chat.Message, bool, error) {
	return nil, false, chat.Errorf(chat.EINTERNAL, "not used by the REST API")
}

func (m *memMessages) History(ctx context.Context, user chat.ID, q chat.HistoryQuery) (chat.HistoryPage, error) {
	if err := m.rooms.CheckAccess(ctx, user, q.RoomID); err != nil {
		return chat.HistoryPage{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastQuery = q
	var all []chat.Message
	for _, msg := range m.msgs {
		if msg.RoomID == q.RoomID && (q.From.IsZero() || !msg.CreatedAt.Before(q.From)) && (q.To.IsZero() || msg.CreatedAt.Before(q.To)) {
			all = append(all, msg)
		}
	}
	start := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 || n > len(all) {
			return chat.HistoryPage{}, chat.Errorf(chat.EINVALID, "invalid cursor")
		}
		start = n
	}
	end := min(start+q.Limit, len(all))
	page := chat.HistoryPage{Messages: all[start:end]}
	if end < len(all) {
		page.NextCursor = strconv.Itoa(end)
	}
	return page, nil
}

func (m *memMessages) Search(ctx context.Context, user chat.ID, q chat.SearchQuery) (chat.SearchResult, error) {
	rooms := q.RoomIDs
	for _, id := range rooms {
		if err := m.rooms.CheckAccess(ctx, user, id); err != nil {
			return chat.SearchResult{}, err
		}
	}
	if rooms == nil {
		rooms, _ = m.rooms.ReadableRooms(ctx, user)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastQuery = q
	var res chat.SearchResult
	for _, msg := range slices.Backward(m.msgs) {
		if !slices.Contains(rooms, msg.RoomID) || (q.UserID != 0 && msg.UserID != q.UserID) ||
			!strings.Contains(msg.Body, q.Text) {
			continue
		}
		res.Total++
		if m.searchCap > 0 && res.Total > m.searchCap {
			res.Total, res.TotalRelation = m.searchCap, chat.TotalGte
		}
		if len(res.Hits) < q.Limit {
			hl := strings.ReplaceAll(html.EscapeString(msg.Body), html.EscapeString(q.Text), "<mark>"+html.EscapeString(q.Text)+"</mark>")
			res.Hits = append(res.Hits, chat.SearchHit{Message: msg, Highlight: hl})
		}
	}
	return res, nil
}

func (m *memMessages) Post(ctx context.Context, c chat.Caller, room chat.ID, body, nonce string) (chat.Message, error) {
	if err := chat.ValidateBody(body); err != nil {
		return chat.Message{}, err
	}
	if err := m.rooms.CheckAccess(ctx, c.User.ID, room); err != nil {
		return chat.Message{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rateLimited {
		return chat.Message{}, &chat.Error{Code: chat.ERATELIMITED, Message: "slow down", RetryAfterMillis: 1500}
	}
	m.next++
	msg := chat.Message{ID: m.next, RoomID: room, UserID: c.User.ID, Username: c.User.Username, Body: body, Nonce: nonce, CreatedAt: t0}
	m.msgs = append(m.msgs, msg)
	return msg, nil
}

// Fixture IDs and tokens.
const (
	alice, bob, carol          chat.ID = 1, 2, 3
	general, secret, bobsRoom  chat.ID = 10, 20, 30
	aliceTok, bobTok, carolTok         = "alice-token", "bob-token", "carol-token"
	alicePassword                      = "alice-password"
)

// env is one test's world: fakes seeded with three users, a public room
// with five messages, and two private rooms.
type env struct {
	users *memUsers
	rooms *memRooms
	msgs  *memMessages
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	u := newMemUsers()
	a := u.add(alice, "alice", alicePassword, aliceTok)
	b := u.add(bob, "bob", "bob-password", bobTok)
	u.add(carol, "carol", "carol-password", carolTok)
	r := newMemRooms(u)
	r.add(chat.Room{ID: general, Name: "general", Description: "everyone", OwnerID: alice})
	r.add(chat.Room{ID: secret, Name: "secret", Description: "alice only", Private: true, OwnerID: alice})
	r.add(chat.Room{ID: bobsRoom, Name: "bobs", Private: true, OwnerID: bob}, carol)
	m := newMemMessages(r)
	for i := chat.ID(1); i <= 5; i++ {
		who := a
		if i%2 == 0 {
			who = b
		}
		m.add(general, who, 1000+i, fmt.Sprintf("hello %d", i))
	}
	m.add(secret, a, 2001, "secret plans")
	return &env{users: u, rooms: r, msgs: m}
}

func (e *env) deps() Deps { return Deps{Users: e.users, Rooms: e.rooms, Query: e.msgs, Poster: e.msgs} }
