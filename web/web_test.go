package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func get(tb testing.TB, target string, hdr map[string]string) *http.Response {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func body(tb testing.TB, res *http.Response) string {
	tb.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestSecurityHeaders(t *testing.T) {
	for _, p := range []string{"/", "/index.html", "/js/app.js", "/css/app.css", "/rooms/123", "/nope.js"} {
		res := get(t, p, nil)
		want := map[string]string{
			"Content-Security-Policy": CSP,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		}
		for k, v := range want {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", p, k, got, v)
			}
		}
	}
	if !strings.Contains(CSP, "script-src 'self'") || strings.Contains(CSP, "unsafe-inline") {
		t.Errorf("CSP too loose: %s", CSP)
	}
}

func TestContentTypes(t *testing.T) {
	tests := []struct{ path, ct string }{
		{"/", "text/html; charset=utf-8"},
		{"/index.html", "text/html; charset=utf-8"},
		{"/js/app.js", "text/javascript; charset=utf-8"},
		{"/css/app.css", "text/css; charset=utf-8"},
		{"/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		res := get(t, tt.path, nil)
		if res.StatusCode != 200 {
			t.Errorf("%s: status %d", tt.path, res.StatusCode)
		}
		if got := res.Header.Get("Content-Type"); got != tt.ct {
			t.Errorf("%s: Content-Type %q, want %q", tt.path, got, tt.ct)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", tt.path, got)
		}
	}
}

func TestDeepLinksAndNotFound(t *testing.T) {
	index := body(t, get(t, "/", nil))
	tests := []struct {
		path      string
		status    int
		wantIndex bool
	}{
		{"/rooms/12345", 200, true},
		{"/some/deep/link", 200, true},
		{"/missing.js", 404, false},
		{"/js/missing.css", 404, false},
		{"/api/v1/nope", 404, false},
	}
	for _, tt := range tests {
		res := get(t, tt.path, nil)
		b := body(t, res)
		if res.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.path, res.StatusCode, tt.status)
		}
		if (b == index) != tt.wantIndex {
			t.Errorf("%s: served index = %v, want %v", tt.path, b == index, tt.wantIndex)
		}
	}
	res := get(t, "/api/v1/nope", nil)
	if !strings.Contains(body(t, res), `"not_found"`) {
		t.Error("/api/ 404 is not the API error shape")
	}
}

func TestPathTraversal(t *testing.T) {
	index := body(t, get(t, "/", nil))
	for _, p := range []string{
		"/../../etc/passwd", "/%2e%2e/", "/%2e%2e/%2e%2e/etc/passwd", "/js/../../web.go",
		"/..%2f..%2fetc%2fpasswd", "/static/index.html", "/web.go", "/../web_test.go",
	} {
		// NewRequest keeps the target as a client sent it: no dot-segment
		// cleaning happens before the handler sees it.
		req := httptest.NewRequest(http.MethodGet, p, nil)
		if strings.Contains(strings.ToLower(p), "2e") || strings.Contains(p, "..") {
			if !strings.Contains(req.URL.Path, "..") {
				t.Fatalf("%s: test request lost its dot segments (%q)", p, req.URL.Path)
			}
		}
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, req)
		b := rec.Body.String()
		if strings.Contains(b, "root:") || strings.Contains(b, "package web") {
			t.Errorf("%s escaped the embedded tree", p)
		}
		if rec.Code == 200 && b != index {
			t.Errorf("%s: 200 with something other than index.html", p)
		}
	}
}

func TestETagAnd304(t *testing.T) {
	for _, p := range []string{"/", "/js/app.js", "/css/app.css"} {
		res := get(t, p, nil)
		etag := res.Header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
			t.Fatalf("%s: ETag %q is not strong", p, etag)
		}
		if again := get(t, p, nil).Header.Get("ETag"); again != etag {
			t.Errorf("%s: ETag not stable: %q vs %q", p, etag, again)
		}
		for _, inm := range []string{etag, `"x", ` + etag, "W/" + etag, "*"} {
			res := get(t, p, map[string]string{"If-None-Match": inm})
			if res.StatusCode != http.StatusNotModified {
				t.Errorf("%s If-None-Match %s: status %d, want 304", p, inm, res.StatusCode)
			}
			if b := body(t, res); b != "" {
				t.Errorf("%s: 304 with a body", p)
			}
			if res.Header.Get("ETag") != etag {
				t.Errorf("%s: 304 without the ETag", p)
			}
		}
		if res := get(t, p, map[string]string{"If-None-Match": `"other"`}); res.StatusCode != 200 {
			t.Errorf("%s: stale If-None-Match gave %d", p, res.StatusCode)
		}
	}
	// Different files must have different ETags.
	if get(t, "/js/app.js", nil).Header.Get("ETag") == get(t, "/css/app.css", nil).Header.Get("ETag") {
		t.Error("two files share an ETag")
	}
}

func TestGzip(t *testing.T) {
	plain := get(t, "/js/app.js", nil)
	plainBody := body(t, plain)
	if plain.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip sent without Accept-Encoding")
	}
	if !strings.Contains(plain.Header.Get("Vary"), "Accept-Encoding") {
		t.Error("missing Vary: Accept-Encoding")
	}
	res := get(t, "/js/app.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", res.Header.Get("Content-Encoding"))
	}
	if res.Header.Get("ETag") == plain.Header.Get("ETag") {
		t.Error("gzip and identity representations share a strong ETag")
	}
	raw, _ := io.ReadAll(res.Body)
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := io.ReadAll(zr)
	if string(dec) != plainBody {
		t.Error("gzip body does not decode to the file")
	}
	if res.Header.Get("Content-Length") != strconv.Itoa(len(raw)) {
		t.Errorf("Content-Length %s, body %d", res.Header.Get("Content-Length"), len(raw))
	}
	if res := get(t, "/js/app.js", map[string]string{"If-None-Match": res.Header.Get("ETag"), "Accept-Encoding": "gzip"}); res.StatusCode != 304 {
		t.Errorf("gzip ETag revalidation: %d", res.StatusCode)
	}
	if res := get(t, "/js/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); res.Header.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 still compressed")
	}
}

func TestMethods(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	req = httptest.NewRequest(http.MethodHead, "/", nil)
	rec = httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, body %d", rec.Code, rec.Body.Len())
	}
}

func TestNoInlineScript(t *testing.T) {
	// The CSP forbids inline script and handlers; catch them before a browser does.
	for name, a := range assets {
		if !strings.HasSuffix(name, ".html") {
			continue
		}
		s := strings.ToLower(string(a.body))
		for _, bad := range []string{"<script>", " onclick=", " onload=", " onerror=", "<style", " style="} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
