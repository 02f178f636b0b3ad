package httpapi

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// apiScenario is one request against a fresh API and its expected answer, in
// the style of pocketbase's tests.ApiScenario.
type apiScenario struct {
	name    string
	method  string
	url     string
	body    string
	headers map[string]string
	tls     bool
	config  Config
	// setup changes the fakes before the request.
	setup func(tb testing.TB, e *env)

	wantStatus  int
	wantContent []string // substrings the body must contain
	notContent  []string // substrings it must not contain
	wantHeaders map[string]string
	// check runs extra assertions, with the env to make follow-up requests.
	check func(tb testing.TB, e *env, h http.Handler, rec *httptest.ResponseRecorder)
}

// newHandler mounts an API over e's fakes on a fresh mux.
func newHandler(tb testing.TB, cfg Config, deps Deps, log *slog.Logger) http.Handler {
	tb.Helper()
	mux := http.NewServeMux()
	New(cfg, deps, log).Register(mux)
	return mux
}

// do serves one request and returns the recorded answer.
func do(tb testing.TB, h http.Handler, method, url, body string, headers map[string]string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func (s apiScenario) test(t *testing.T) {
	t.Helper()
	t.Run(s.name, func(t *testing.T) {
		e := newEnv(t)
		if s.setup != nil {
			s.setup(t, e)
		}
		h := newHandler(t, s.config, e.deps(), slog.New(slog.DiscardHandler))
		var rd io.Reader
		if s.body != "" {
			rd = strings.NewReader(s.body)
		}
		req := httptest.NewRequest(s.method, s.url, rd)
		if s.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if s.tls {
			req.TLS = &tls.ConnectionState{}
		}
		for k, v := range s.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		body := rec.Body.String()
		if rec.Code != s.wantStatus {
			t.Fatalf("status = %d, want %d; body: %s", rec.Code, s.wantStatus, body)
		}
		for _, c := range s.wantContent {
			if !strings.Contains(body, c) {
				t.Errorf("body lacks %q:\n%s", c, body)
			}
		}
		for _, c := range s.notContent {
			if strings.Contains(body, c) {
				t.Errorf("body contains %q:\n%s", c, body)
			}
		}
		for k, v := range s.wantHeaders {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("header %s = %q, want %q", k, got, v)
			}
		}
		// Every API answer, error or not, carries these.
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options = %q", got)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q", got)
		}
		if rec.Code >= 400 {
			checkErrorBody(t, rec)
		}
		if s.check != nil {
			s.check(t, e, h, rec)
		}
	})
}

// checkErrorBody asserts the error shape of API.md and that nothing
// internal leaked.
func checkErrorBody(tb testing.TB, rec *httptest.ResponseRecorder) {
	tb.Helper()
	b := rec.Body.Bytes()
	if !bytes.HasPrefix(b, []byte(`{"error":{"code":"`)) || !bytes.Contains(b, []byte(`"message":"`)) {
		tb.Errorf("error body not in API.md shape: %s", b)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("error Content-Type = %q", ct)
	}
	for _, leak := range []string{"goroutine", ".go:", "SELECT", "sql:", "/var/"} {
		if bytes.Contains(b, []byte(leak)) {
			tb.Errorf("error body leaks %q: %s", leak, b)
		}
	}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func withHeaders(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func cookie(tok string) map[string]string { return map[string]string{"Cookie": "chatd_session=" + tok} }

func errCode(code string) string { return `{"error":{"code":"` + code + `"` }
