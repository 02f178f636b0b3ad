// Package web serves the bundled chat UI: plain ES modules and CSS embedded
// into the binary, so a fresh clone serves the full UI with no npm step.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy sent with every UI response. The UI has
// no inline script, style or event handler, so it needs nothing looser.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

type asset struct {
	body        []byte
	gz          []byte // nil when compression does not pay off
	etag        string // strong ETag of body
	gzETag      string // strong ETag of gz: a different representation needs a different tag
	contentType string
}

// contentTypes is checked before mime.TypeByExtension, whose answers depend
// on the host's mime tables (some map .js to application/javascript or nothing).
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
}

func typeOf(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if ct, ok := contentTypes[ext]; ok {
		return ct
	}
	if ct := mime.TypeByExtension(ext); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

func compressible(ct string) bool {
	return strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") ||
		strings.Contains(ct, "javascript") || strings.HasPrefix(ct, "image/svg")
}

// assets is computed once: the content is fixed at build time, so hashing and
// compressing per request would only waste CPU.
var assets = mustLoad()

func mustLoad() map[string]*asset {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic("web: " + err.Error())
	}
	m := map[string]*asset{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:16])
		a := &asset{body: b, etag: `"` + h + `"`, contentType: typeOf(p)}
		if compressible(a.contentType) && len(b) > 256 {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			if buf.Len() < len(b) {
				a.gz = buf.Bytes()
				a.gzETag = `"` + h + `-gz"`
			}
		}
		m["/"+p] = a
		return nil
	})
	if err != nil {
		panic("web: " + err.Error())
	}
	if m["/index.html"] == nil {
		panic("web: static/index.html missing")
	}
	return m
}

// Handler serves the UI at "/". Known assets are served as they are; any other
// path without a file extension gets index.html so deep links work; unknown
// paths that look like files, and anything under /api/, get 404.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setSecurityHeaders(h)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// path.Clean on a rooted path removes every "..", so the lookup below can
	// only ever hit a file that was embedded; nothing reaches the disk.
	p := path.Clean("/" + r.URL.Path)
	a, ok := assets[p]
	if !ok {
		if p == "/api" || strings.HasPrefix(p, "/api/") {
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"not_found","message":"not found"}}` + "\n"))
			return
		}
		if path.Ext(p) != "" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		a = assets["/index.html"]
	}
	// No hashed file names, so every asset is revalidated; the ETag makes
	// that a cheap 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Type", a.contentType)

	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, a.gzETag
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	if noneMatch(r.Header.Get("If-None-Match"), etag) {
		h.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// acceptsGzip reports whether an Accept-Encoding value allows gzip, honouring
// q=0 as a refusal.
func acceptsGzip(v string) bool {
	star := false
	for _, part := range strings.Split(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		ok := true
		for _, prm := range strings.Split(params, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(prm), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if q, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && q == 0 {
					ok = false
				}
			}
		}
		if name == "gzip" {
			return ok
		}
		star = ok
	}
	return star
}

// noneMatch implements the weak comparison RFC 9110 prescribes for If-None-Match.
func noneMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
