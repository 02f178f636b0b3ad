// Package httpx holds the HTTP edge helpers shared by the REST API and the
// WebSocket gateway: bearer-token extraction, JSON answers, and the one
// mapping of domain errors to HTTP responses.
package httpx

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/chatd/chatd/pkg/chat"
)

// SessionCookie is the cookie set at login and accepted by every endpoint.
const SessionCookie = "chatd_session"

// Token returns the bearer token of r: the Authorization header, then the
// session cookie, then (only if allowQuery, for the WebSocket upgrade that
// browsers cannot add headers to) the token query parameter.
func Token(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		return c.Value
	}
	if allowQuery {
		return r.URL.Query().Get("token")
	}
	return ""
}

// WriteJSON writes v with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorBody is the error answer of API.md.
type ErrorBody struct {
	Error *chat.WireError `json:"error"`
}

// WriteError maps err to its status and writes the error body. Internal
// errors are logged here, once, with their detail, and reach the client
// only as "internal error".
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	we := chat.ToWire(err)
	status := chat.HTTPStatus(we.Code)
	if we.Code == chat.EINTERNAL && log != nil {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if we.Code == chat.ERATELIMITED {
		secs := (we.RetryAfterMS + 999) / 1000
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	WriteJSON(w, status, ErrorBody{we})
}
