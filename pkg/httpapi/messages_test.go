package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// messageIDs decodes a {"messages":[...]} answer into its IDs.
func messageIDs(tb testing.TB, rec *httptest.ResponseRecorder) []string {
	tb.Helper()
	var page struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		tb.Fatalf("decode %s: %v", rec.Body, err)
	}
	ids := []string{}
	for _, m := range page.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func wantIDs(want ...string) func(testing.TB, *env, http.Handler, *httptest.ResponseRecorder) {
	return func(tb testing.TB, _ *env, _ http.Handler, rec *httptest.ResponseRecorder) {
		tb.Helper()
		if got := messageIDs(tb, rec); !slices.Equal(got, want) {
			tb.Errorf("message ids = %v, want %v", got, want)
		}
	}
}

func TestLatestMessages(t *testing.T) {
	scenarios := []apiScenario{
		{
			name: "newest page, oldest first, short page has no next_before", method: "GET", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_before":null`, `"username":"alice"`, `"body":"hello 1"`},
			check: wantIDs("1001", "1002", "1003", "1004", "1005"),
		},
		{
			name: "full page points next_before at its oldest message", method: "GET", url: "/api/v1/rooms/10/messages?limit=2", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_before":"1004"`},
			check: wantIDs("1004", "1005"),
		},
		{
			name: "before pages back", method: "GET", url: "/api/v1/rooms/10/messages?limit=2&before=1004", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_before":"1002"`},
			check: wantIDs("1002", "1003"),
		},
		{
			name: "last page is short", method: "GET", url: "/api/v1/rooms/10/messages?limit=2&before=1002", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_before":null`},
			check: wantIDs("1001"),
		},
		{
			name: "page past the oldest is empty", method: "GET", url: "/api/v1/rooms/10/messages?before=1001", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`{"messages":[],"next_before":null}`},
		},
		{
			name: "empty room", method: "GET", url: "/api/v1/rooms/30/messages", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`{"messages":[],"next_before":null}`},
		},
		{
			name: "max limit", method: "GET", url: "/api/v1/rooms/10/messages?limit=200", headers: bearer(bobTok), wantStatus: 200,
		},
		{
			name: "limit zero", method: "GET", url: "/api/v1/rooms/10/messages?limit=0", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"limit"},
		},
		{
			name: "limit over max", method: "GET", url: "/api/v1/rooms/10/messages?limit=201", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "huge limit", method: "GET", url: "/api/v1/rooms/10/messages?limit=99999999999999999999999", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "negative limit", method: "GET", url: "/api/v1/rooms/10/messages?limit=-1", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "non-numeric limit", method: "GET", url: "/api/v1/rooms/10/messages?limit=ten", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "bad before", method: "GET", url: "/api/v1/rooms/10/messages?before=abc", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"before"},
		},
		{
			name: "negative before", method: "GET", url: "/api/v1/rooms/10/messages?before=-1", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "malformed query string", method: "GET", url: "/api/v1/rooms/10/messages?limit=%zz", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "private room as stranger", method: "GET", url: "/api/v1/rooms/20/messages", headers: bearer(bobTok),
			wantStatus: 404, notContent: []string{"secret plans"},
		},
		{
			name: "private room as member", method: "GET", url: "/api/v1/rooms/20/messages", headers: bearer(aliceTok),
			wantStatus: 200, wantContent: []string{"secret plans"},
		},
		{
			name: "bad room id", method: "GET", url: "/api/v1/rooms/ten/messages", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "unauthenticated", method: "GET", url: "/api/v1/rooms/10/messages", wantStatus: 401,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}

func TestPostMessage(t *testing.T) {
	scenarios := []apiScenario{
		{
			name: "post", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body:       `{"body":"hi there","nonce":"n-1"}`,
			wantStatus: 201,
			wantContent: []string{`"id":"9001"`, `"room_id":"10"`, `"user_id":"2"`, `"username":"bob"`,
				`"body":"hi there"`, `"nonce":"n-1"`, `"created_at":"`},
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				rec := do(tb, h, "GET", "/api/v1/rooms/10/messages?limit=1", "", bearer(aliceTok))
				if !strings.Contains(rec.Body.String(), `"body":"hi there"`) {
					tb.Errorf("posted message not the newest: %s", rec.Body)
				}
			},
		},
		{
			name: "post without nonce omits it", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"hi"}`, wantStatus: 201, notContent: []string{`"nonce"`, `"edited_at"`},
		},
		{
			name: "post keeps script and SQL verbatim, JSON-escaped", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"<script>alert('x')</script> '; DROP TABLE messages; --"}`, wantStatus: 201,
			wantContent: []string{`\u003cscript\u003ealert('x')\u003c/script\u003e '; DROP TABLE messages; --`},
			notContent:  []string{"<script>"},
		},
		{
			name: "post 4000 characters", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"` + strings.Repeat("é", chat.MaxBodyChars) + `"}`, wantStatus: 201,
		},
		{
			name: "post 4001 characters", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"` + strings.Repeat("é", chat.MaxBodyChars+1) + `"}`, wantStatus: 413,
			wantContent: []string{errCode("too_large")},
		},
		{
			name: "post empty body", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":""}`, wantStatus: 400,
		},
		{
			name: "post white space", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":" \n\t "}`, wantStatus: 400,
		},
		{
			name: "post missing body", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"nonce":"x"}`, wantStatus: 400,
		},
		{
			name: "post NUL", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"a\u0000b"}`, wantStatus: 400, wantContent: []string{"NUL"},
		},
		{
			name: "post invalid UTF-8", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: "{\"body\":\"caf\xc3\x28\"}", wantStatus: 400, wantContent: []string{"UTF-8"},
		},
		{
			name: "post body as number", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":12}`, wantStatus: 400,
		},
		{
			name: "post control character in nonce", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"hi","nonce":"a\nb"}`, wantStatus: 400, wantContent: []string{"nonce"},
		},
		{
			name: "post long nonce", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"hi","nonce":"` + strings.Repeat("n", chat.MaxNonceLen+1) + `"}`, wantStatus: 400,
		},
		{
			name: "post 2 MiB", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			body: `{"body":"` + strings.Repeat("a", 2<<20) + `"}`, wantStatus: 413,
		},
		{
			name: "post rate limited", method: "POST", url: "/api/v1/rooms/10/messages", headers: bearer(bobTok),
			setup: func(_ testing.TB, e *env) { e.msgs.rateLimited = true },
			body:  `{"body":"spam","nonce":"s1"}`, wantStatus: 429,
			wantContent: []string{errCode("rate_limited"), `"retry_after_ms":1500`},
			wantHeaders: map[string]string{"Retry-After": "2"},
		},
		{
			name: "post to private room as stranger", method: "POST", url: "/api/v1/rooms/20/messages", headers: bearer(bobTok),
			body: `{"body":"let me in"}`, wantStatus: 404,
		},
		{
			name: "post to missing room", method: "POST", url: "/api/v1/rooms/77/messages", headers: bearer(bobTok),
			body: `{"body":"anyone?"}`, wantStatus: 404,
		},
		{
			name: "post with cookie and no Origin", method: "POST", url: "/api/v1/rooms/10/messages", headers: cookie(bobTok),
			body: `{"body":"forged"}`, wantStatus: 403,
			check: func(tb testing.TB, e *env, _ http.Handler, _ *httptest.ResponseRecorder) {
				if n := len(e.msgs.msgs); n != 6 {
					tb.Errorf("refused request stored a message: %d messages", n)
				}
			},
		},
		{
			name: "post with cookie and same origin", method: "POST", url: "/api/v1/rooms/10/messages",
			headers: withHeaders(cookie(bobTok), "Origin", sameOrigin), body: `{"body":"from the UI"}`, wantStatus: 201,
		},
		{
			name: "post unauthenticated", method: "POST", url: "/api/v1/rooms/10/messages",
			body: `{"body":"hi"}`, wantStatus: 401,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}

func TestHistory(t *testing.T) {
	from := chat.FormatTime(t0.Add(1002 * time.Second))
	to := chat.FormatTime(t0.Add(1004 * time.Second))
	scenarios := []apiScenario{
		{
			name: "whole history", method: "GET", url: "/api/v1/rooms/10/history", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_cursor":null`},
			check: wantIDs("1001", "1002", "1003", "1004", "1005"),
		},
		{
			name: "time range is from-inclusive, to-exclusive", method: "GET", url: "/api/v1/rooms/10/history?from=" + from + "&to=" + to, headers: bearer(bobTok),
			wantStatus: 200, check: wantIDs("1002", "1003"),
		},
		{
			name: "RFC 3339 with offset", method: "GET", url: "/api/v1/rooms/10/history?from=2026-01-02T05:00:00%2B02:00", headers: bearer(bobTok),
			wantStatus: 200,
			check: func(tb testing.TB, e *env, _ http.Handler, _ *httptest.ResponseRecorder) {
				q := e.msgs.lastQuery.(chat.HistoryQuery)
				if !q.From.Equal(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)) || q.Limit != 50 {
					tb.Errorf("query = %+v", q)
				}
			},
		},
		{
			name: "paging with cursor", method: "GET", url: "/api/v1/rooms/10/history?limit=2", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"next_cursor":"2"`},
			check: func(tb testing.TB, _ *env, h http.Handler, rec *httptest.ResponseRecorder) {
				wantIDs("1001", "1002")(tb, nil, h, rec)
				next := do(tb, h, "GET", "/api/v1/rooms/10/history?limit=2&cursor=2", "", bearer(bobTok))
				wantIDs("1003", "1004")(tb, nil, h, next)
			},
		},
		{
			name: "empty history", method: "GET", url: "/api/v1/rooms/30/history", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`{"messages":[],"next_cursor":null}`},
		},
		{
			name: "bad from", method: "GET", url: "/api/v1/rooms/10/history?from=yesterday", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"from"},
		},
		{
			name: "bad to", method: "GET", url: "/api/v1/rooms/10/history?to=2026-13-01T00:00:00Z", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "to before from", method: "GET", url: "/api/v1/rooms/10/history?from=" + to + "&to=" + from, headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "bad limit", method: "GET", url: "/api/v1/rooms/10/history?limit=500", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "cursor rejected by the service", method: "GET", url: "/api/v1/rooms/10/history?cursor=zzz", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "huge cursor", method: "GET", url: "/api/v1/rooms/10/history?cursor=" + strings.Repeat("c", 5000), headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "private room as stranger", method: "GET", url: "/api/v1/rooms/20/history", headers: bearer(bobTok), wantStatus: 404,
		},
		{
			name: "unauthenticated", method: "GET", url: "/api/v1/rooms/10/history", wantStatus: 401,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}

func TestSearch(t *testing.T) {
	scenarios := []apiScenario{
		{
			name: "search readable rooms", method: "GET", url: "/api/v1/search?q=hello", headers: bearer(bobTok),
			wantStatus: 200,
			wantContent: []string{`"total":5,"total_relation":"eq"`, `"next_cursor":null`, `"highlight":"\u003cmark\u003ehello\u003c/mark\u003e 5"`,
				`"message":{"id":"1005"`},
		},
		{
			name: "search says when the count stopped at the cap", method: "GET", url: "/api/v1/search?q=hello&limit=2", headers: bearer(bobTok),
			setup:      func(_ testing.TB, e *env) { e.msgs.searchCap = 3 },
			wantStatus: 200, wantContent: []string{`"total":3,"total_relation":"gte"`},
		},
		{
			name: "search does not reach private rooms of others", method: "GET", url: "/api/v1/search?q=secret", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`{"hits":[],"total":0,"total_relation":"eq","next_cursor":null}`},
		},
		{
			name: "search own private room", method: "GET", url: "/api/v1/search?q=secret", headers: bearer(aliceTok),
			wantStatus: 200, wantContent: []string{`"total":1`},
		},
		{
			name: "search filtered to a private room of others is 404", method: "GET", url: "/api/v1/search?q=secret&room_id=20", headers: bearer(bobTok),
			wantStatus: 404,
		},
		{
			name: "search passes filters", method: "GET",
			url:     "/api/v1/search?q=hello&room_id=10&user_id=2&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&limit=1&cursor=abc",
			headers: bearer(bobTok), wantStatus: 200, wantContent: []string{`"total":2`},
			check: func(tb testing.TB, e *env, _ http.Handler, _ *httptest.ResponseRecorder) {
				q := e.msgs.lastQuery.(chat.SearchQuery)
				if q.Text != "hello" || !slices.Equal(q.RoomIDs, []chat.ID{10}) || q.UserID != 2 || q.Limit != 1 || q.Cursor != "abc" ||
					q.From.IsZero() || q.To.IsZero() {
					tb.Errorf("query = %+v", q)
				}
			},
		},
		{
			name: "search SQL-ish query", method: "GET", url: "/api/v1/search?q=%27%20OR%201%3D1%20--", headers: bearer(bobTok),
			wantStatus: 200, wantContent: []string{`"hits":[]`},
		},
		{
			name: "search without q", method: "GET", url: "/api/v1/search", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"q is required"},
		},
		{
			name: "search blank q", method: "GET", url: "/api/v1/search?q=%20%20", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search long q", method: "GET", url: "/api/v1/search?q=" + strings.Repeat("q", chat.MaxSearchLen+1), headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search invalid UTF-8 q", method: "GET", url: "/api/v1/search?q=%FF%FE", headers: bearer(bobTok),
			wantStatus: 400, wantContent: []string{"UTF-8"},
		},
		{
			name: "search NUL in q", method: "GET", url: "/api/v1/search?q=a%00b", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search bad room_id", method: "GET", url: "/api/v1/search?q=x&room_id=-1", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search bad user_id", method: "GET", url: "/api/v1/search?q=x&user_id=bob", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search bad from", method: "GET", url: "/api/v1/search?q=x&from=1700000000", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search bad limit", method: "GET", url: "/api/v1/search?q=x&limit=0", headers: bearer(bobTok), wantStatus: 400,
		},
		{
			name: "search unauthenticated", method: "GET", url: "/api/v1/search?q=x", wantStatus: 401,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}
