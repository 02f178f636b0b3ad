// Package httpapi serves the REST part of chatd's public API (API.md) under
// /api/v1. The WebSocket paths (/api/v1/ws, /api/v1/rooms/{id}/ws) and the
// web UI are mounted on the same mux by other packages.
//
// The package only translates HTTP to the role interfaces: it validates input
// at the edge (the services validate again), authenticates the caller, guards
// cookie-authenticated requests against CSRF, and maps domain errors to the
// error answers of API.md through httpx.WriteError.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// DefaultMaxBodyBytes bounds request bodies when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// Config tunes the REST API. The zero value is usable.
type Config struct {
	// MaxBodyBytes is the largest request body accepted; larger bodies get
	// 413 too_large. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// AllowedOrigins are the exact origins ("https://app.example.com")
	// other than the server's own that may call the API from a browser:
	// they get CORS headers and pass the CSRF check. Empty means same origin
	// only. "*" is never honoured: it would hand the API to every site.
	AllowedOrigins []string
	// SecureCookies marks the session cookie Secure even when the request
	// did not arrive over TLS, for deployments behind a TLS-terminating proxy.
	SecureCookies bool
}

// Users is the part of the user role the API needs (chat.UserService).
type Users interface {
	// Register creates an account. EINVALID, ECONFLICT.
	Register(ctx context.Context, username, password, displayName, email string) (chat.User, error)
	// Login opens a session. EUNAUTHENTICATED on bad credentials.
	Login(ctx context.Context, username, password string) (token string, s chat.Session, u chat.User, err error)
	// Logout revokes the session everywhere at once.
	Logout(ctx context.Context, tokenHash string) error
	// Authenticate resolves a bearer token. EUNAUTHENTICATED.
	Authenticate(ctx context.Context, token string) (chat.Caller, error)
	// User returns a user by ID. ENOTFOUND.
	User(ctx context.Context, id chat.ID) (chat.User, error)
}

// Rooms is the room role: rooms, membership and access checks.
type Rooms interface {
	chat.RoomService
}

// Query is the query role: access-checked reads of messages.
type Query interface {
	chat.QueryService
}

// Poster posts a message the way a WebSocket send does.
type Poster interface {
	// Post validates the body, checks access and the rate limit, and returns
	// once the message is durable. ERATELIMITED errors carry
	// RetryAfterMillis.
	Post(ctx context.Context, caller chat.Caller, roomID chat.ID, body, nonce string) (chat.Message, error)
}

// Deps are the roles the API calls. A nil dependency is replaced by one that
// answers 503 unavailable, so a process started without a role degrades
// instead of panicking on first use (a lesson of the seed).
type Deps struct {
	Users  Users
	Rooms  Rooms
	Query  Query
	Poster Poster
}

// API is the REST handler set. Create it with New and mount it with Register.
type API struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	origins map[string]bool
	// paths knows every REST path regardless of method, to tell a wrong
	// method (405) from an unknown path (404) in the /api/v1/ fallback.
	paths *http.ServeMux
}

// New returns the API. log may be nil (logging is then discarded).
func New(cfg Config, deps Deps, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "httpapi")
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	a := &API{cfg: cfg, log: log, origins: map[string]bool{}}
	for _, o := range cfg.AllowedOrigins {
		if n, ok := normalizeOrigin(o); ok {
			a.origins[n] = true
		} else {
			log.Warn("ignoring allowed origin", "origin", o)
		}
	}
	a.deps = fillDeps(deps, log)
	a.paths = http.NewServeMux()
	seen := map[string]bool{}
	for _, rt := range a.routes() {
		if !seen[rt.path] {
			seen[rt.path] = true
			a.paths.Handle(rt.path, http.NotFoundHandler())
		}
	}
	return a
}

// Register mounts every REST endpoint on mux, plus a fallback for the rest
// of /api/v1/ so unknown API paths answer JSON 404 (or 405) instead of the
// web UI's page, and CORS preflights are answered. The more specific
// WebSocket patterns of the gateway win over the fallback.
func (a *API) Register(mux *http.ServeMux) {
	for _, rt := range a.routes() {
		mux.Handle(rt.method+" "+rt.path, a.wrap(rt))
	}
	mux.Handle("/api/v1/", a.wrap(route{path: "/api/v1/", h: a.fallback}))
}

// route is one REST endpoint. Every route listed here must be in
// openapi.json, and the test checks it both ways.
type route struct {
	method string
	path   string
	auth   bool
	h      func(w http.ResponseWriter, r *http.Request, c chat.Caller)
}

func (a *API) routes() []route {
	return []route{
		{"GET", "/api/v1/openapi.json", false, a.openAPI},
		{"POST", "/api/v1/users", false, a.register},
		{"GET", "/api/v1/users/me", true, a.me},
		{"POST", "/api/v1/sessions", false, a.login},
		{"DELETE", "/api/v1/sessions/current", true, a.logout},
		{"POST", "/api/v1/rooms", true, a.createRoom},
		{"GET", "/api/v1/rooms", true, a.listRooms},
		{"GET", "/api/v1/rooms/{id}", true, a.getRoom},
		{"PATCH", "/api/v1/rooms/{id}", true, a.updateRoom},
		{"DELETE", "/api/v1/rooms/{id}", true, a.deleteRoom},
		{"GET", "/api/v1/rooms/{id}/members", true, a.listMembers},
		{"POST", "/api/v1/rooms/{id}/members", true, a.addMember},
		{"DELETE", "/api/v1/rooms/{id}/members/{user_id}", true, a.removeMember},
		{"GET", "/api/v1/rooms/{id}/messages", true, a.latest},
		{"POST", "/api/v1/rooms/{id}/messages", true, a.post},
		{"GET", "/api/v1/rooms/{id}/history", true, a.history},
		{"GET", "/api/v1/search", true, a.search},
	}
}

// allowedMethods lists the CORS methods; kept beside the routes.
const allowedMethods = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"

// fallback answers what no route matched under /api/v1/: CORS preflights,
// known paths with another method, and unknown paths.
func (a *API) fallback(w http.ResponseWriter, r *http.Request, _ chat.Caller) {
	if r.Method == http.MethodOptions {
		a.preflight(w, r)
		return
	}
	if _, pat := a.paths.Handler(r); pat != "" {
		var allow []string
		for _, rt := range a.routes() {
			if rt.path == pat {
				allow = append(allow, rt.method)
				if rt.method == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeMethodNotAllowed(w, r)
		return
	}
	writeErr(w, r, a.log, chat.Errorf(chat.ENOTFOUND, "no such endpoint"))
}

// statusWriter records the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// wrap adds what every API answer needs: security headers, CORS, panic
// recovery, the access log line, authentication and the CSRF check.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		defer func() {
			// The path only, never the query: a query string may carry
			// a token on other endpoints, and tokens never reach logs.
			a.log.Debug("request", "method", r.Method, "path", r.URL.Path,
				"status", w.status, "duration_ms", time.Since(start).Milliseconds())
		}()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				if w.status == 0 {
					writeErr(w, r, a.log, chat.Errorf(chat.EINTERNAL, "internal error"))
				}
			}
		}()
		// Bound every body here, with the server's own writer, so that
		// exceeding the limit also closes the connection instead of
		// draining the rest of a hostile upload.
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rw, r.Body, a.cfg.MaxBodyBytes)
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		a.cors(w, r)

		var caller chat.Caller
		if rt.auth {
			c, err := a.authenticate(r)
			if err != nil {
				writeErr(w, r, a.log, err)
				return
			}
			caller = c
		}
		if err := a.csrf(r); err != nil {
			writeErr(w, r, a.log, err)
			return
		}
		rt.h(w, r, caller)
	})
}

func (a *API) authenticate(r *http.Request) (chat.Caller, error) {
	tok := tokenOf(r)
	if tok == "" {
		return chat.Caller{}, chat.Errorf(chat.EUNAUTHENTICATED, "authentication required")
	}
	c, err := a.deps.Users.Authenticate(r.Context(), tok)
	if err != nil {
		// An unknown or revoked token and a broken user role must not
		// look alike: only the former is the client's fault.
		if chat.ErrorCode(err) == chat.ENOTFOUND {
			err = chat.Errorf(chat.EUNAUTHENTICATED, "invalid or expired session")
		}
		return chat.Caller{}, err
	}
	return c, nil
}

// isSafeMethod reports methods that must not change state, which CSRF
// protection therefore lets through.
func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func trimLower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
