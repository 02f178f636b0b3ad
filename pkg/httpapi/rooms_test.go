package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
)

func TestRooms(t *testing.T) {
	scenarios := []apiScenario{
		{
			name: "create public room", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body:        `{"name":"random","description":"anything goes"}`,
			wantStatus:  201,
			wantContent: []string{`"name":"random"`, `"description":"anything goes"`, `"private":false`, `"owner_id":"2"`, `"id":"501"`},
		},
		{
			name: "create private room", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"hidden","private":true}`, wantStatus: 201, wantContent: []string{`"private":true`},
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				if rec := do(tb, h, "GET", "/api/v1/rooms/501", "", bearer(aliceTok)); rec.Code != 404 {
					tb.Errorf("new private room visible to a stranger: %d", rec.Code)
				}
			},
		},
		{
			name: "create room with SQL-ish name keeps it verbatim", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"'; DROP TABLE rooms; --"}`, wantStatus: 201, wantContent: []string{`"name":"'; DROP TABLE rooms; --"`},
		},
		{
			name: "create room with script name is escaped in JSON", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"<script>alert(1)</script>"}`, wantStatus: 201,
			wantContent: []string{`\u003cscript\u003e`}, notContent: []string{"<script>"},
		},
		{
			name: "create room without name", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"description":"x"}`, wantStatus: 400, wantContent: []string{"name"},
		},
		{
			name: "create room with blank name", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"  \t "}`, wantStatus: 400,
		},
		{
			name: "create room with long name", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"` + strings.Repeat("n", chat.MaxRoomNameLen+1) + `"}`, wantStatus: 400,
		},
		{
			name: "create room with NUL in name", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"a\u0000b"}`, wantStatus: 400,
		},
		{
			name: "create room with long description", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"x","description":"` + strings.Repeat("d", chat.MaxRoomDescLen+1) + `"}`, wantStatus: 400,
		},
		{
			name: "create room with private as a string", method: "POST", url: "/api/v1/rooms", headers: bearer(bobTok),
			body: `{"name":"x","private":"yes"}`, wantStatus: 400, wantContent: []string{`field \"private\" must be a boolean`},
		},
		{
			name: "create room unauthenticated", method: "POST", url: "/api/v1/rooms",
			body: `{"name":"x"}`, wantStatus: 401,
		},
		{
			name: "create room with cookie and no Origin", method: "POST", url: "/api/v1/rooms", headers: cookie(bobTok),
			body: `{"name":"x"}`, wantStatus: 403,
		},
		{
			name: "create room with cookie from an allowed origin", method: "POST", url: "/api/v1/rooms",
			config:  Config{AllowedOrigins: []string{"https://app.example.org"}},
			headers: withHeaders(cookie(bobTok), "Origin", "https://app.example.org"),
			body:    `{"name":"x"}`, wantStatus: 201,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": "https://app.example.org", "Access-Control-Allow-Credentials": "true"},
		},
		{
			name: "list rooms as alice", method: "GET", url: "/api/v1/rooms", headers: bearer(aliceTok),
			wantStatus: 200, wantContent: []string{`{"rooms":[`, `"name":"general"`, `"name":"secret"`}, notContent: []string{`"name":"bobs"`},
		},
		{
			name: "list rooms as bob hides alice's private room", method: "GET", url: "/api/v1/rooms", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"name":"general"`, `"name":"bobs"`}, notContent: []string{`"name":"secret"`},
		},
		{
			name: "list rooms empty is []", method: "GET", url: "/api/v1/rooms", headers: bearer(bobTok),
			setup:      func(_ testing.TB, e *env) { e.rooms.rooms = map[chat.ID]chat.Room{} },
			wantStatus: 200, wantContent: []string{`{"rooms":[]}`},
		},
		{
			name: "list rooms unauthenticated", method: "GET", url: "/api/v1/rooms", wantStatus: 401,
		},
		{
			name: "get public room", method: "GET", url: "/api/v1/rooms/10", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`{"id":"10","name":"general","description":"everyone","private":false,"owner_id":"1","created_at":"`},
		},
		{
			name: "get private room as member", method: "GET", url: "/api/v1/rooms/20", headers: bearer(aliceTok), wantStatus: 200,
		},
		{
			name: "get private room as stranger is 404", method: "GET", url: "/api/v1/rooms/20", headers: bearer(bobTok),
			wantStatus: 404, wantContent: []string{errCode("not_found")}, notContent: []string{"secret"},
		},
		{
			name: "get missing room", method: "GET", url: "/api/v1/rooms/999", headers: bearer(bobTok), wantStatus: 404,
		},
		{
			name: "get room with non-numeric id", method: "GET", url: "/api/v1/rooms/abc", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"room id"},
		},
		{
			name: "get room with negative id", method: "GET", url: "/api/v1/rooms/-5", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "get room with zero id", method: "GET", url: "/api/v1/rooms/0", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "get room with overflowing id", method: "GET", url: "/api/v1/rooms/99999999999999999999", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "get room with SQL in id", method: "GET", url: "/api/v1/rooms/1%20OR%201=1", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "get room unauthenticated", method: "GET", url: "/api/v1/rooms/10", wantStatus: 401,
		},
		{
			name: "rename room as owner", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			body: `{"name":"lobby"}`, wantStatus: 200, wantContent: []string{`"name":"lobby"`, `"description":"everyone"`},
		},
		{
			name: "patch description only, null name left alone", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			body: `{"name":null,"description":""}`, wantStatus: 200, wantContent: []string{`"name":"general"`, `"description":""`},
		},
		{
			name: "patch nothing", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			body: `{}`, wantStatus: 200, wantContent: []string{`"name":"general"`},
		},
		{
			name: "patch as non-owner", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(bobTok),
			body: `{"name":"mine"}`, wantStatus: 403, wantContent: []string{errCode("forbidden")},
		},
		{
			name: "patch private room as stranger is 404", method: "PATCH", url: "/api/v1/rooms/20", headers: bearer(bobTok),
			body: `{"name":"mine"}`, wantStatus: 404,
		},
		{
			name: "patch with empty name", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			body: `{"name":""}`, wantStatus: 400,
		},
		{
			name: "patch with invalid JSON", method: "PATCH", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			body: `{"name":`, wantStatus: 400,
		},
		{
			name: "patch with bad id", method: "PATCH", url: "/api/v1/rooms/x", headers: bearer(aliceTok),
			body: `{"name":"y"}`, wantStatus: 400,
		},
		{
			name: "delete room as owner", method: "DELETE", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			wantStatus: 204,
			check: func(tb testing.TB, _ *env, h http.Handler, rec *httptest.ResponseRecorder) {
				if rec.Body.Len() != 0 {
					tb.Errorf("204 with a body: %q", rec.Body)
				}
				if got := do(tb, h, "GET", "/api/v1/rooms/10", "", bearer(aliceTok)); got.Code != 404 {
					tb.Errorf("deleted room: %d", got.Code)
				}
			},
		},
		{
			name: "delete room as non-owner", method: "DELETE", url: "/api/v1/rooms/10", headers: bearer(bobTok), wantStatus: 403,
		},
		{
			name: "delete private room as stranger", method: "DELETE", url: "/api/v1/rooms/20", headers: bearer(bobTok), wantStatus: 404,
		},
		{
			name: "add member as owner", method: "POST", url: "/api/v1/rooms/20/members", headers: bearer(aliceTok),
			body: `{"username":"bob"}`, wantStatus: 204,
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				if got := do(tb, h, "GET", "/api/v1/rooms/20", "", bearer(bobTok)); got.Code != 200 {
					tb.Errorf("new member cannot see the room: %d", got.Code)
				}
			},
		},
		{
			name: "add member as non-owner member", method: "POST", url: "/api/v1/rooms/30/members", headers: bearer(carolTok),
			body: `{"username":"alice"}`, wantStatus: 403,
		},
		{
			name: "add member to a private room as stranger", method: "POST", url: "/api/v1/rooms/30/members", headers: bearer(aliceTok),
			body: `{"username":"alice"}`, wantStatus: 404,
		},
		{
			name: "add unknown user", method: "POST", url: "/api/v1/rooms/20/members", headers: bearer(aliceTok),
			body: `{"username":"nobody"}`, wantStatus: 404,
		},
		{
			name: "add member with invalid username", method: "POST", url: "/api/v1/rooms/20/members", headers: bearer(aliceTok),
			body: `{"username":"<b>"}`, wantStatus: 400,
		},
		{
			name: "add member without body", method: "POST", url: "/api/v1/rooms/20/members", headers: bearer(aliceTok),
			wantStatus: 400,
		},
		{
			name: "list members of a private room as member", method: "GET", url: "/api/v1/rooms/30/members", headers: bearer(carolTok),
			wantStatus:  200,
			wantContent: []string{`{"members":[{"id":"2","username":"bob","display_name":"Bob"`, `{"id":"3","username":"carol"`, `"next_after":null}`},
			notContent:  []string{"email", "password"},
		},
		{
			name: "list members of a public room as non-member", method: "GET", url: "/api/v1/rooms/10/members", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"username":"alice"`}, notContent: []string{`"username":"bob"`},
		},
		{
			name: "list members page by page", method: "GET", url: "/api/v1/rooms/30/members?limit=1", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"username":"bob"`, `"next_after":"2"`}, notContent: []string{"carol"},
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				rec := do(tb, h, "GET", "/api/v1/rooms/30/members?limit=1&after=2", "", bearer(bobTok))
				if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"username":"carol"`) || strings.Contains(rec.Body.String(), `"username":"bob"`) {
					tb.Errorf("second page: %d %s", rec.Code, rec.Body)
				}
				rec = do(tb, h, "GET", "/api/v1/rooms/30/members?after=3", "", bearer(bobTok))
				if rec.Code != 200 || rec.Body.String() != `{"members":[],"next_after":null}`+"\n" {
					tb.Errorf("past the last member: %d %q", rec.Code, rec.Body)
				}
			},
		},
		{
			name: "list members of a private room as stranger", method: "GET", url: "/api/v1/rooms/30/members", headers: bearer(aliceTok),
			wantStatus: 404, notContent: []string{"carol"},
		},
		{
			name: "list members of a missing room", method: "GET", url: "/api/v1/rooms/99/members", headers: bearer(aliceTok), wantStatus: 404,
		},
		{
			name: "list members unauthenticated", method: "GET", url: "/api/v1/rooms/30/members", wantStatus: 401,
		},
		{
			name: "list members with limit 0", method: "GET", url: "/api/v1/rooms/30/members?limit=0", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"limit"},
		},
		{
			name: "list members with limit over 200", method: "GET", url: "/api/v1/rooms/30/members?limit=201", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"limit"},
		},
		{
			name: "list members with text limit", method: "GET", url: "/api/v1/rooms/30/members?limit=ten", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"limit"},
		},
		{
			name: "list members after a negative ID", method: "GET", url: "/api/v1/rooms/30/members?after=-1", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"after"},
		},
		{
			name: "list members after an overflowing ID", method: "GET", url: "/api/v1/rooms/30/members?after=99999999999999999999999", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"after"},
		},
		{
			name: "list members after SQL", method: "GET", url: "/api/v1/rooms/30/members?after=1%20OR%201=1", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"after"},
		},
		{
			name: "list members with a malformed query", method: "GET", url: "/api/v1/rooms/30/members?after=%zz", headers: bearer(bobTok),
			wantStatus: 400,
		},
		{
			name: "list members of a bad room id", method: "GET", url: "/api/v1/rooms/abc/members", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"room id"},
		},
		{
			name: "remove member as owner", method: "DELETE", url: "/api/v1/rooms/30/members/3", headers: bearer(bobTok),
			wantStatus: 204,
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				if got := do(tb, h, "GET", "/api/v1/rooms/30", "", bearer(carolTok)); got.Code != 404 {
					tb.Errorf("removed member still sees the room: %d", got.Code)
				}
			},
		},
		{
			name: "member removes themself", method: "DELETE", url: "/api/v1/rooms/30/members/3", headers: bearer(carolTok), wantStatus: 204,
		},
		{
			name: "member removes someone else", method: "DELETE", url: "/api/v1/rooms/30/members/2", headers: bearer(carolTok), wantStatus: 403,
		},
		{
			name: "remove member of a private room as stranger", method: "DELETE", url: "/api/v1/rooms/30/members/3", headers: bearer(aliceTok), wantStatus: 404,
		},
		{
			name: "remove member with bad user id", method: "DELETE", url: "/api/v1/rooms/30/members/-3", headers: bearer(bobTok), wantStatus: 400,
			wantContent: []string{"user id"},
		},
		{
			name: "internal error does not leak", method: "GET", url: "/api/v1/rooms", headers: bearer(aliceTok),
			setup: func(_ testing.TB, e *env) {
				e.rooms.fail = fmt.Errorf("list rooms: %w", errors.New("sql: SELECT * FROM rooms: database is locked at /var/lib/chatd/db"))
			},
			wantStatus: 500, wantContent: []string{`{"error":{"code":"internal","message":"internal error"}}`},
		},
		{
			name: "unavailable backend is 503", method: "GET", url: "/api/v1/rooms", headers: bearer(aliceTok),
			setup:      func(_ testing.TB, e *env) { e.rooms.fail = chat.Errorf(chat.EUNAVAILABLE, "room store unavailable") },
			wantStatus: 503, wantContent: []string{errCode("unavailable")},
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}
