package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/chatd/chatd/pkg/chat"
)

func TestEdge(t *testing.T) {
	allowed := Config{AllowedOrigins: []string{"https://app.example.org/", "*"}}
	scenarios := []apiScenario{
		{
			name: "openapi document", method: "GET", url: "/api/v1/openapi.json",
			wantStatus: 200, wantContent: []string{`"openapi": "3.1.0"`},
			wantHeaders: map[string]string{"Content-Type": "application/json"},
		},
		{
			name: "unknown API path is JSON 404", method: "GET", url: "/api/v1/nope", headers: bearer(aliceTok),
			wantStatus: 404, wantContent: []string{errCode("not_found")},
		},
		{
			name: "trailing slash is not a route", method: "GET", url: "/api/v1/rooms/", headers: bearer(aliceTok),
			wantStatus: 404,
		},
		{
			name: "wrong method on a known path", method: "PUT", url: "/api/v1/rooms/10", headers: bearer(aliceTok),
			wantStatus: 405, wantContent: []string{errCode("method_not_allowed")},
			wantHeaders: map[string]string{"Allow": "GET, HEAD, PATCH, DELETE"},
		},
		{
			name: "preflight from an allowed origin", method: "OPTIONS", url: "/api/v1/rooms/10/messages", config: allowed,
			headers: map[string]string{"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "authorization, content-type"},
			wantStatus: 204,
			wantHeaders: map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example.org",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     allowedMethods,
				"Access-Control-Allow-Headers":     "Authorization, Content-Type",
			},
		},
		{
			name: "preflight from another origin", method: "OPTIONS", url: "/api/v1/rooms", config: allowed,
			headers:    map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
			wantStatus: 403, wantHeaders: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "no CORS by default", method: "GET", url: "/api/v1/rooms", headers: withHeaders(bearer(aliceTok), "Origin", "https://app.example.org"),
			wantStatus: 200, wantHeaders: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "wildcard origin is never honoured", method: "GET", url: "/api/v1/rooms", config: allowed,
			headers:    withHeaders(bearer(aliceTok), "Origin", "https://random.example"),
			wantStatus: 200, wantHeaders: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "CORS on a simple request from an allowed origin", method: "GET", url: "/api/v1/rooms", config: allowed,
			headers:    withHeaders(bearer(aliceTok), "Origin", "https://APP.example.org"),
			wantStatus: 200, wantHeaders: map[string]string{"Access-Control-Allow-Origin": "https://APP.example.org", "Vary": "Origin"},
		},
		{
			name: "bearer write from a foreign origin is not CSRF", method: "POST", url: "/api/v1/rooms",
			headers: withHeaders(bearer(aliceTok), "Origin", "https://tool.example"), body: `{"name":"x"}`, wantStatus: 201,
		},
		{
			name: "cookie write with a foreign Referer", method: "POST", url: "/api/v1/rooms",
			headers: withHeaders(cookie(aliceTok), "Referer", "https://evil.example/page"), body: `{"name":"x"}`, wantStatus: 403,
		},
		{
			name: "cookie write with same origin on the default port", method: "POST", url: "/api/v1/rooms",
			headers: withHeaders(cookie(aliceTok), "Origin", "https://example.com:443"), body: `{"name":"x"}`, wantStatus: 201,
		},
		{
			name: "cookie write through a proxy that rewrites Host", method: "POST", url: "/api/v1/rooms",
			headers: withHeaders(cookie(aliceTok), "Origin", "https://chat.example.net", "X-Forwarded-Host", "chat.example.net"),
			body:    `{"name":"x"}`, wantStatus: 201,
		},
		{
			name: "cookie write with an Origin that has a path", method: "POST", url: "/api/v1/rooms",
			headers: withHeaders(cookie(aliceTok), "Origin", sameOrigin+"/evil"), body: `{"name":"x"}`, wantStatus: 403,
		},
		{
			name: "login with only a foreign Referer is let through", method: "POST", url: "/api/v1/sessions",
			headers: map[string]string{"Referer": "https://docs.example/howto"},
			body:    `{"username":"alice","password":"` + alicePassword + `"}`, wantStatus: 201,
		},
		{
			name: "deeply nested JSON", method: "POST", url: "/api/v1/users",
			body:       `{"x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `,"username":"dave","password":"password1"}`,
			wantStatus: 400,
		},
		{
			name: "cookie read needs no Origin", method: "GET", url: "/api/v1/rooms", headers: cookie(aliceTok), wantStatus: 200,
		},
	}
	for _, s := range scenarios {
		s.test(t)
	}
}

// TestMissingDeps: a process started without a role answers 503 instead of
// panicking on a nil interface.
func TestMissingDeps(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t, Config{}, Deps{Users: e.users}, nil)
	for _, tc := range []struct{ method, url, body string }{
		{"GET", "/api/v1/rooms", ""},
		{"GET", "/api/v1/rooms/10/messages", ""},
		{"POST", "/api/v1/rooms/10/messages", `{"body":"hi"}`},
		{"GET", "/api/v1/search?q=x", ""},
	} {
		rec := do(t, h, tc.method, tc.url, tc.body, bearer(aliceTok))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), errCode("unavailable")) {
			t.Errorf("%s %s: %d %s", tc.method, tc.url, rec.Code, rec.Body)
		}
	}
	h = newHandler(t, Config{}, Deps{}, nil)
	if rec := do(t, h, "GET", "/api/v1/users/me", "", bearer(aliceTok)); rec.Code != 503 {
		t.Errorf("no user role: %d", rec.Code)
	}
}

// TestRegisterBesideGateway mounts the API on a mux that also holds the
// gateway's WebSocket paths and the web UI, as the program does: the
// patterns must not conflict (ServeMux panics) and each must win its paths.
func TestRegisterBesideGateway(t *testing.T) {
	e := newEnv(t)
	mux := http.NewServeMux()
	New(Config{}, e.deps(), nil).Register(mux)
	mark := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Handler", name) })
	}
	mux.Handle("GET /api/v1/ws", mark("ws"))
	mux.Handle("GET /api/v1/rooms/{id}/ws", mark("room-ws"))
	mux.Handle("/", mark("web"))
	for url, want := range map[string]string{
		"/api/v1/ws":          "ws",
		"/api/v1/rooms/10/ws": "room-ws",
		"/rooms/10":           "web",
		"/":                   "web",
		"/api/v1/rooms":       "",
		"/api/v1/unknown":     "",
	} {
		rec := do(t, mux, "GET", url, "", bearer(aliceTok))
		if got := rec.Header().Get("X-Handler"); got != want {
			t.Errorf("GET %s served by %q, want %q", url, got, want)
		}
	}
}

// TestLogsNoSecrets runs a login and authenticated requests with debug
// logging and checks that neither tokens nor passwords reach the log, while
// the access log line is there.
func TestLogsNoSecrets(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHandler(t, Config{}, e.deps(), log)
	rec := do(t, h, "POST", "/api/v1/sessions", `{"username":"alice","password":"`+alicePassword+`"}`, nil)
	tok := sessionCookie(t, rec).Value
	do(t, h, "GET", "/api/v1/users/me?token="+tok, "", bearer(tok))
	do(t, h, "GET", "/api/v1/users/me", "", bearer("wrong-"+tok))
	do(t, h, "POST", "/api/v1/users", `{"username":"x","password":"hunter2hunter2"}`, nil)
	out := buf.String()
	for _, secret := range []string{tok, alicePassword, "hunter2hunter2", aliceTok} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "path=/api/v1/users/me status=200") {
		t.Errorf("no access log line:\n%s", out)
	}
}

// TestOpenAPICoversRoutes checks both ways that the embedded document lists
// exactly the registered routes, and that every $ref in it resolves.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	var documented, registered []string
	for path, item := range doc.Paths {
		for m := range item {
			if slices.Contains(methods, m) {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}
	for _, rt := range New(Config{}, Deps{}, nil).routes() {
		registered = append(registered, rt.method+" "+rt.path)
	}
	sort.Strings(documented)
	sort.Strings(registered)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("openapi.json documents %s, which is not registered", d)
		}
	}

	var all any
	if err := json.Unmarshal(openAPIDoc, &all); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok && !resolves(all, ref) {
				t.Errorf("unresolved $ref %s", ref)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(all)
}

func resolves(doc any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	cur := doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

// TestPanicIsInternal: a panicking dependency answers 500 with the usual
// error body instead of dropping the connection.
func TestPanicIsInternal(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t, Config{}, Deps{Users: e.users, Rooms: panicRooms{e.rooms}}, nil)
	rec := do(t, h, "GET", "/api/v1/rooms", "", bearer(aliceTok))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	checkErrorBody(t, rec)
}

type panicRooms struct{ *memRooms }

func (panicRooms) ListRooms(context.Context, chat.ID) ([]chat.Room, error) { panic("boom") }

// TestOversizedChunkedUpload sends a 2 MiB body without Content-Length
// through a real server, so the limit is enforced while reading.
func TestOversizedChunkedUpload(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(newHandler(t, Config{}, e.deps(), nil))
	t.Cleanup(srv.Close)
	body := io.MultiReader(strings.NewReader(`{"body":"`), strings.NewReader(strings.Repeat("a", 2<<20)), strings.NewReader(`"}`))
	req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/v1/rooms/10/messages", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bobTok)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 413 || !strings.Contains(string(b), errCode("too_large")) {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
}
