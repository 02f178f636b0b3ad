package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/httpx"
)

// httptest.NewRequest addresses example.com, so this is the same origin.
const sameOrigin = "http://example.com"

func TestAccounts(t *testing.T) {
	big := `{"username":"dave","password":"` + strings.Repeat("x", 2<<20) + `"}`
	scenarios := []apiScenario{
		{
			name: "register", method: "POST", url: "/api/v1/users",
			body:       `{"username":"dave","password":"password1","display_name":"Dave"}`,
			wantStatus: 201,
			wantContent: []string{`"username":"dave"`, `"display_name":"Dave"`, `"id":"`,
				`"created_at":"2026-01-02T03:04:05.000000000Z"`},
			notContent: []string{"password"},
		},
		{
			name: "register ignores unknown fields", method: "POST", url: "/api/v1/users",
			body:       `{"username":"dave","password":"password1","favourite_colour":"teal","extra":{"a":[1]}}`,
			wantStatus: 201, wantContent: []string{`"username":"dave"`},
		},
		{
			name: "register with same-origin Origin", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"password1"}`, headers: map[string]string{"Origin": sameOrigin},
			wantStatus: 201,
		},
		{
			name: "register taken username", method: "POST", url: "/api/v1/users",
			body: `{"username":"alice","password":"password1"}`, wantStatus: 409, wantContent: []string{errCode("conflict")},
		},
		{
			name: "register short username", method: "POST", url: "/api/v1/users",
			body: `{"username":"al","password":"password1"}`, wantStatus: 400, wantContent: []string{errCode("invalid"), "username"},
		},
		{
			name: "register long username", method: "POST", url: "/api/v1/users",
			body: `{"username":"` + strings.Repeat("a", 33) + `","password":"password1"}`, wantStatus: 400,
		},
		{
			name: "register uppercase username", method: "POST", url: "/api/v1/users",
			body: `{"username":"Alice2","password":"password1"}`, wantStatus: 400,
		},
		{
			name: "register script username", method: "POST", url: "/api/v1/users",
			body: `{"username":"<script>alert(1)</script>","password":"password1"}`, wantStatus: 400,
			notContent: []string{"<script>"},
		},
		{
			name: "register SQL-ish username", method: "POST", url: "/api/v1/users",
			body: `{"username":"x' OR '1'='1","password":"password1"}`, wantStatus: 400,
		},
		{
			name: "register NUL in username", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave\u0000","password":"password1"}`, wantStatus: 400,
		},
		{
			name: "register invalid UTF-8 in username", method: "POST", url: "/api/v1/users",
			body: "{\"username\":\"da\xffve\",\"password\":\"password1\"}", wantStatus: 400,
			wantContent: []string{"UTF-8"},
		},
		{
			name: "register short password", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"short"}`, wantStatus: 400, wantContent: []string{"password"},
		},
		{
			name: "register missing password", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave"}`, wantStatus: 400,
		},
		{
			name: "register long display name", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"password1","display_name":"` + strings.Repeat("é", 65) + `"}`, wantStatus: 400,
		},
		{
			name: "register bad email", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"password1","email":"not an email"}`, wantStatus: 400, wantContent: []string{"email"},
		},
		{
			name: "register invalid JSON", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave",`, wantStatus: 400, wantContent: []string{errCode("invalid"), "invalid JSON"},
		},
		{
			name: "register trailing garbage", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"password1"} {"x":1}`, wantStatus: 400,
		},
		{
			name: "register array body", method: "POST", url: "/api/v1/users",
			body: `[{"username":"dave","password":"password1"}]`, wantStatus: 400, wantContent: []string{"JSON object"},
		},
		{
			name: "register null body", method: "POST", url: "/api/v1/users",
			body: `null`, wantStatus: 400, wantContent: []string{"JSON object"},
		},
		{
			name: "register empty body", method: "POST", url: "/api/v1/users",
			wantStatus: 400, wantContent: []string{"JSON object"},
		},
		{
			name: "register wrong type", method: "POST", url: "/api/v1/users",
			body: `{"username":42,"password":"password1"}`, wantStatus: 400,
			wantContent: []string{`field \"username\" must be a string`},
		},
		{
			name: "register 2 MiB body", method: "POST", url: "/api/v1/users",
			body: big, wantStatus: 413, wantContent: []string{errCode("too_large")},
		},
		{
			name: "register over a configured small limit", method: "POST", url: "/api/v1/users",
			config: Config{MaxBodyBytes: 16},
			body:   `{"username":"dave","password":"password1"}`, wantStatus: 413,
		},
		{
			name: "register from a foreign origin", method: "POST", url: "/api/v1/users",
			body: `{"username":"dave","password":"password1"}`, headers: map[string]string{"Origin": "https://evil.example"},
			wantStatus: 403, wantContent: []string{errCode("forbidden")},
		},
		{
			name: "login", method: "POST", url: "/api/v1/sessions",
			body:        `{"username":"alice","password":"` + alicePassword + `"}`,
			wantStatus:  201,
			wantContent: []string{`"token":"session-token-`, `"expires_at":"2026-01-03T03:04:05.000000000Z"`, `"user":{"id":"1","username":"alice"`},
			check: func(tb testing.TB, e *env, h http.Handler, rec *httptest.ResponseRecorder) {
				c := sessionCookie(tb, rec)
				if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
					tb.Errorf("cookie attributes: %+v", c)
				}
				if !c.Expires.Equal(t0.Add(24 * time.Hour)) {
					tb.Errorf("cookie expires %v", c.Expires)
				}
				// The cookie alone authenticates reads.
				me := do(tb, h, "GET", "/api/v1/users/me", "", cookie(c.Value))
				if me.Code != 200 || !strings.Contains(me.Body.String(), `"username":"alice"`) {
					tb.Errorf("me with cookie: %d %s", me.Code, me.Body)
				}
			},
		},
		{
			name: "login over TLS sets Secure", method: "POST", url: "/api/v1/sessions", tls: true,
			body: `{"username":"alice","password":"` + alicePassword + `"}`, wantStatus: 201,
			check: func(tb testing.TB, _ *env, _ http.Handler, rec *httptest.ResponseRecorder) {
				if !sessionCookie(tb, rec).Secure {
					tb.Error("cookie not Secure over TLS")
				}
			},
		},
		{
			name: "login with SecureCookies", method: "POST", url: "/api/v1/sessions", config: Config{SecureCookies: true},
			body: `{"username":"alice","password":"` + alicePassword + `"}`, wantStatus: 201,
			check: func(tb testing.TB, _ *env, _ http.Handler, rec *httptest.ResponseRecorder) {
				if !sessionCookie(tb, rec).Secure {
					tb.Error("cookie not Secure with SecureCookies")
				}
			},
		},
		{
			name: "login wrong password", method: "POST", url: "/api/v1/sessions",
			body: `{"username":"alice","password":"wrong-password"}`, wantStatus: 401,
			wantContent: []string{errCode("unauthenticated")},
			check: func(tb testing.TB, _ *env, _ http.Handler, rec *httptest.ResponseRecorder) {
				if len(rec.Result().Cookies()) != 0 {
					tb.Error("cookie set on failed login")
				}
			},
		},
		{
			name: "login unknown user", method: "POST", url: "/api/v1/sessions",
			body: `{"username":"nobody","password":"password1"}`, wantStatus: 401,
		},
		{
			name: "login impossible username", method: "POST", url: "/api/v1/sessions",
			body: `{"username":"' OR 1=1 --","password":"password1"}`, wantStatus: 401,
		},
		{
			name: "login missing password", method: "POST", url: "/api/v1/sessions",
			body: `{"username":"alice"}`, wantStatus: 400,
		},
		{
			name: "login invalid JSON", method: "POST", url: "/api/v1/sessions",
			body: `username=alice&password=x`, wantStatus: 400,
		},
		{
			name: "me with bearer", method: "GET", url: "/api/v1/users/me", headers: bearer(aliceTok),
			wantStatus: 200, wantContent: []string{`{"id":"1","username":"alice","display_name":"Alice","created_at":"`},
		},
		{
			name: "me without credentials", method: "GET", url: "/api/v1/users/me",
			wantStatus: 401, wantContent: []string{errCode("unauthenticated")},
		},
		{
			name: "me with unknown token", method: "GET", url: "/api/v1/users/me", headers: bearer("forged"),
			wantStatus: 401,
		},
		{
			name: "me with a non-bearer scheme", method: "GET", url: "/api/v1/users/me",
			headers: map[string]string{"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}, wantStatus: 401,
		},
		{
			name: "me with a bad Authorization header ignores a good cookie", method: "GET", url: "/api/v1/users/me",
			headers: withHeaders(cookie(aliceTok), "Authorization", "Token x"), wantStatus: 401,
		},
		{
			name: "logout with bearer revokes the token", method: "DELETE", url: "/api/v1/sessions/current", headers: bearer(aliceTok),
			wantStatus: 204,
			check: func(tb testing.TB, _ *env, h http.Handler, rec *httptest.ResponseRecorder) {
				c := sessionCookie(tb, rec)
				if c.Value != "" || c.MaxAge >= 0 {
					tb.Errorf("cookie not cleared: %+v", c)
				}
				if got := do(tb, h, "GET", "/api/v1/users/me", "", bearer(aliceTok)); got.Code != 401 {
					tb.Errorf("revoked token: status %d", got.Code)
				}
				if got := do(tb, h, "GET", "/api/v1/users/me", "", bearer(bobTok)); got.Code != 200 {
					tb.Errorf("other session: status %d", got.Code)
				}
			},
		},
		{
			name: "logout with cookie and same origin", method: "DELETE", url: "/api/v1/sessions/current",
			headers: withHeaders(cookie(aliceTok), "Origin", sameOrigin), wantStatus: 204,
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				if got := do(tb, h, "GET", "/api/v1/users/me", "", cookie(aliceTok)); got.Code != 401 {
					tb.Errorf("revoked cookie: status %d", got.Code)
				}
			},
		},
		{
			name: "logout with cookie and same-origin Referer", method: "DELETE", url: "/api/v1/sessions/current",
			headers: withHeaders(cookie(aliceTok), "Referer", sameOrigin+"/rooms/10"), wantStatus: 204,
		},
		{
			name: "logout with cookie and no Origin is CSRF", method: "DELETE", url: "/api/v1/sessions/current",
			headers: cookie(aliceTok), wantStatus: 403, wantContent: []string{errCode("forbidden")},
			check: func(tb testing.TB, _ *env, h http.Handler, _ *httptest.ResponseRecorder) {
				if got := do(tb, h, "GET", "/api/v1/users/me", "", cookie(aliceTok)); got.Code != 200 {
					tb.Errorf("session revoked by refused request: %d", got.Code)
				}
			},
		},
		{
			name: "logout with cookie from a foreign origin", method: "DELETE", url: "/api/v1/sessions/current",
			headers: withHeaders(cookie(aliceTok), "Origin", "https://evil.example"), wantStatus: 403,
		},
		{
			name: "logout with cookie and Origin null", method: "DELETE", url: "/api/v1/sessions/current",
			headers: withHeaders(cookie(aliceTok), "Origin", "null"), wantStatus: 403,
		},
		{
			name: "logout without credentials", method: "DELETE", url: "/api/v1/sessions/current", wantStatus: 401,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}

func sessionCookie(tb testing.TB, rec *httptest.ResponseRecorder) *http.Cookie {
	tb.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == httpx.SessionCookie {
			return c
		}
	}
	tb.Fatalf("no %s cookie in %v", httpx.SessionCookie, rec.Header().Values("Set-Cookie"))
	return nil
}

// TestLoginFlow goes through sign-up, cookie login, a cookie-authenticated
// write and logout, as the bundled web UI does.
func TestLoginFlow(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t, Config{}, e.deps(), nil)
	origin := map[string]string{"Origin": sameOrigin}

	if rec := do(t, h, "POST", "/api/v1/users", `{"username":"dave","password":"password1"}`, origin); rec.Code != 201 {
		t.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	rec := do(t, h, "POST", "/api/v1/sessions", `{"username":"dave","password":"password1"}`, origin)
	if rec.Code != 201 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	tok := sessionCookie(t, rec).Value
	rec = do(t, h, "POST", "/api/v1/rooms", `{"name":"dave's room"}`, withHeaders(cookie(tok), "Origin", sameOrigin))
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), `"owner_id":"`) {
		t.Fatalf("create room with cookie: %d %s", rec.Code, rec.Body)
	}
	if rec = do(t, h, "DELETE", "/api/v1/sessions/current", "", withHeaders(cookie(tok), "Origin", sameOrigin)); rec.Code != 204 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	if rec = do(t, h, "GET", "/api/v1/rooms", "", bearer(tok)); rec.Code != 401 {
		t.Fatalf("after logout: %d", rec.Code)
	}
	if _, err := e.users.Authenticate(t.Context(), tok); chat.ErrorCode(err) != chat.EUNAUTHENTICATED {
		t.Fatalf("session still known to the user role: %v", err)
	}
}
