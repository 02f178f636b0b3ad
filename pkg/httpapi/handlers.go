package httpapi

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/httpx"
)

//go:embed openapi.json
var openAPIDoc []byte

func (a *API) openAPI(w http.ResponseWriter, r *http.Request, _ chat.Caller) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(openAPIDoc)
	}
}

// --- accounts and sessions ---

type registerReq struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email"`
}

func (a *API) register(w http.ResponseWriter, r *http.Request, _ chat.Caller) {
	var req registerReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := firstErr(
		chat.ValidateUsername(req.Username),
		chat.ValidatePassword(req.Password),
		chat.ValidateText("display_name", req.DisplayName, chat.MaxDisplayLen),
		validEmail(req.Email),
	); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	u, err := a.deps.Users.Register(r.Context(), req.Username, req.Password, req.DisplayName, req.Email)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("register: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, u)
}

type loginReq struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResp struct {
	Token     string    `json:"token"`
	ExpiresAt string    `json:"expires_at"`
	User      chat.User `json:"user"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request, _ chat.Caller) {
	var req loginReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if req.Username == "" || req.Password == "" {
		writeErr(w, r, a.log, chat.Errorf(chat.EINVALID, "username and password are required"))
		return
	}
	// Credentials that no account can have are refused here without
	// spending a password hash on them, with the same answer as a wrong
	// password so the edge leaks nothing the user role would not.
	if chat.ValidateUsername(req.Username) != nil || len(req.Password) > chat.MaxPasswordLen {
		writeErr(w, r, a.log, chat.Errorf(chat.EUNAUTHENTICATED, "invalid username or password"))
		return
	}
	tok, s, u, err := a.deps.Users.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("login: %w", err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     httpx.SessionCookie,
		Value:    tok,
		Path:     "/",
		Expires:  s.ExpiresAt,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   a.secure(r),
	})
	httpx.WriteJSON(w, http.StatusCreated, loginResp{Token: tok, ExpiresAt: chat.FormatTime(s.ExpiresAt), User: u})
}

func (a *API) secure(r *http.Request) bool { return a.cfg.SecureCookies || r.TLS != nil }

func (a *API) logout(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	if err := a.deps.Users.Logout(r.Context(), c.TokenHash); err != nil {
		writeErr(w, r, a.log, fmt.Errorf("logout: %w", err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     httpx.SessionCookie,
		Value:    "",
		Path:     "/",
		Expires:  time.Unix(0, 0),
		MaxAge:   -1,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   a.secure(r),
	})
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) me(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	// Read the user afresh: the caller may be served from a session cache
	// holding an older copy.
	u, err := a.deps.Users.User(r.Context(), c.User.ID)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("get user: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, u)
}

// --- rooms ---

type createRoomReq struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Private     bool   `json:"private"`
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	var req createRoomReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := firstErr(validName(req.Name), chat.ValidateText("description", req.Description, chat.MaxRoomDescLen)); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	room, err := a.deps.Rooms.CreateRoom(r.Context(), c.User.ID, req.Name, req.Description, req.Private)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("create room: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, room)
}

type roomsResp struct {
	Rooms []chat.Room `json:"rooms"`
}

func (a *API) listRooms(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	rooms, err := a.deps.Rooms.ListRooms(r.Context(), c.User.ID)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("list rooms: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, roomsResp{Rooms: nonNil(rooms)})
}

func (a *API) getRoom(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	room, err := a.deps.Rooms.Room(r.Context(), c.User.ID, id)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("get room: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, room)
}

type updateRoomReq struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func (a *API) updateRoom(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	var req updateRoomReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if req.Name != nil {
		if err := validName(*req.Name); err != nil {
			writeErr(w, r, a.log, err)
			return
		}
	}
	if req.Description != nil {
		if err := chat.ValidateText("description", *req.Description, chat.MaxRoomDescLen); err != nil {
			writeErr(w, r, a.log, err)
			return
		}
	}
	room, err := a.deps.Rooms.UpdateRoom(r.Context(), c.User.ID, id, chat.RoomUpdate{Name: req.Name, Description: req.Description})
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("update room: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, room)
}

func (a *API) deleteRoom(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := a.deps.Rooms.DeleteRoom(r.Context(), c.User.ID, id); err != nil {
		writeErr(w, r, a.log, fmt.Errorf("delete room: %w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type addMemberReq struct {
	Username string `json:"username"`
}

type membersResp struct {
	Members   []chat.User `json:"members"`
	NextAfter *string     `json:"next_after"`
}

// listMembers pages through a room's members by ascending user ID: limit
// (default 50, at most 200) after the user ID after. Anyone who may read
// the room may list them; a private room one is not in is 404.
func (a *API) listMembers(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, after, limit, err := roomPage(r, "after")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	users, err := a.deps.Rooms.Members(r.Context(), c.User.ID, id, after, limit)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("list members: %w", err))
		return
	}
	resp := membersResp{Members: nonNil(users)}
	// As with message pages: a full page may have more behind it.
	if len(users) >= limit && len(users) > 0 {
		s := users[len(users)-1].ID.String()
		resp.NextAfter = &s
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	var req addMemberReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := chat.ValidateUsername(req.Username); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := a.deps.Rooms.AddMember(r.Context(), c.User.ID, id, req.Username); err != nil {
		writeErr(w, r, a.log, fmt.Errorf("add member: %w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	uid, err := pathID(r, "user_id", "user id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := a.deps.Rooms.RemoveMember(r.Context(), c.User.ID, id, uid); err != nil {
		writeErr(w, r, a.log, fmt.Errorf("remove member: %w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- messages ---

// roomPage parses a page of a room's list: the room ID in the path, limit,
// and the ID parameter named cursor (0 when absent).
func roomPage(r *http.Request, cursor string) (room, from chat.ID, limit int, err error) {
	if room, err = pathID(r, "id", "room id"); err != nil {
		return 0, 0, 0, err
	}
	p, err := parseParams(r)
	if err != nil {
		return 0, 0, 0, err
	}
	if limit, err = p.limit(); err != nil {
		return 0, 0, 0, err
	}
	if from, err = p.id(cursor); err != nil {
		return 0, 0, 0, err
	}
	return room, from, limit, nil
}

type latestResp struct {
	Messages   []chat.Message `json:"messages"`
	NextBefore *string        `json:"next_before"`
}

func (a *API) latest(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, before, limit, err := roomPage(r, "before")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	msgs, err := a.deps.Query.Latest(r.Context(), c.User.ID, id, before, limit)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("latest messages: %w", err))
		return
	}
	resp := latestResp{Messages: nonNil(msgs)}
	// A full page may have older messages behind it; a short one cannot.
	// So a client pages until next_before is null, at the cost of one
	// empty page when the count is an exact multiple of limit.
	if len(msgs) >= limit && len(msgs) > 0 {
		s := msgs[0].ID.String()
		resp.NextBefore = &s
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

type postReq struct {
	Body  string `json:"body"`
	Nonce string `json:"nonce"`
}

func (a *API) post(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	var req postReq
	if err := a.readJSON(r, &req); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if err := firstErr(chat.ValidateBody(req.Body), chat.ValidateNonce(req.Nonce)); err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	m, err := a.deps.Poster.Post(r.Context(), c, id, req.Body, req.Nonce)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("post message: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, m)
}

type historyResp struct {
	Messages   []chat.Message `json:"messages"`
	NextCursor *string        `json:"next_cursor"`
}

func (a *API) history(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	id, err := pathID(r, "id", "room id")
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	q := chat.HistoryQuery{RoomID: id}
	p, err := parseParams(r)
	if err == nil {
		q.From, q.To, err = p.timeRange()
	}
	if err == nil {
		q.Limit, err = p.limit()
	}
	if err == nil {
		q.Cursor, err = p.cursor()
	}
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	page, err := a.deps.Query.History(r.Context(), c.User.ID, q)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("history: %w", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, historyResp{Messages: nonNil(page.Messages), NextCursor: optional(page.NextCursor)})
}

type searchResp struct {
	Hits  []chat.SearchHit `json:"hits"`
	Total int64            `json:"total"`
	// TotalRelation is "eq" when Total is exact, "gte" when counting
	// stopped at chat.MaxSearchTotal, as Elasticsearch says it.
	TotalRelation string  `json:"total_relation"`
	NextCursor    *string `json:"next_cursor"`
}

func (a *API) search(w http.ResponseWriter, r *http.Request, c chat.Caller) {
	var q chat.SearchQuery
	p, err := parseParams(r)
	if err == nil {
		q.Text, err = p.str("q")
	}
	if err == nil {
		switch {
		case strings.TrimSpace(q.Text) == "":
			err = chat.Errorf(chat.EINVALID, "q is required")
		case len(q.Text) > chat.MaxSearchLen:
			err = chat.Errorf(chat.EINVALID, "q must be at most %d bytes", chat.MaxSearchLen)
		}
	}
	var roomID chat.ID
	if err == nil {
		roomID, err = p.id("room_id")
	}
	if err == nil {
		q.UserID, err = p.id("user_id")
	}
	if err == nil {
		q.From, q.To, err = p.timeRange()
	}
	if err == nil {
		q.Limit, err = p.limit()
	}
	if err == nil {
		q.Cursor, err = p.cursor()
	}
	if err != nil {
		writeErr(w, r, a.log, err)
		return
	}
	if roomID != 0 {
		q.RoomIDs = []chat.ID{roomID}
	}
	res, err := a.deps.Query.Search(r.Context(), c.User.ID, q)
	if err != nil {
		writeErr(w, r, a.log, fmt.Errorf("search: %w", err))
		return
	}
	rel := res.TotalRelation
	if rel == "" {
		// A query server that predates the field counted exactly.
		rel = chat.TotalEq
	}
	httpx.WriteJSON(w, http.StatusOK, searchResp{Hits: nonNil(res.Hits), Total: res.Total, TotalRelation: rel, NextCursor: optional(res.NextCursor)})
}

// --- helpers ---

// nonNil makes empty lists encode as [] rather than null, which clients
// would otherwise have to special-case.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// optional maps the services' "" (no next page) to JSON null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
