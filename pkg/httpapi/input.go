package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/httpx"
)

// Query parameter limits.
const (
	defaultLimit = 50
	maxCursorLen = 4096
)

func writeErr(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	httpx.WriteError(w, r, log, err)
}

// writeMethodNotAllowed answers 405. API.md has no code for it, so the body
// uses "method_not_allowed", an extension that clients can tell apart from
// the listed codes.
func writeMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusMethodNotAllowed, httpx.ErrorBody{Error: &chat.WireError{
		Code: "method_not_allowed", Message: "method " + r.Method + " not allowed on this path",
	}})
}

// readJSON reads r's body, at most cfg.MaxBodyBytes, into dst (a pointer to
// a struct). It refuses what encoding/json would let through silently:
// invalid UTF-8 (which it would turn into U+FFFD), and a body that is not an
// object (null would leave dst empty). Unknown fields are ignored so clients
// may send newer fields to an older server.
func (a *API) readJSON(r *http.Request, dst any) error {
	tooLarge := chat.Errorf(chat.ETOOLARGE, "request body must be at most %d bytes", a.cfg.MaxBodyBytes)
	if r.ContentLength > a.cfg.MaxBodyBytes {
		return tooLarge
	}
	// r.Body is bounded by http.MaxBytesReader in wrap.
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return chat.Errorf(chat.EINVALID, "could not read request body")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return chat.Errorf(chat.EINVALID, "request body must be a JSON object")
	}
	if !utf8.Valid(raw) {
		return chat.Errorf(chat.EINVALID, "request body must be valid UTF-8")
	}
	if raw[0] != '{' {
		return chat.Errorf(chat.EINVALID, "request body must be a JSON object")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns a decoding error into a message that names the problem
// without echoing the input.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return chat.Errorf(chat.EINVALID, "invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return chat.Errorf(chat.EINVALID, "request body must be a JSON object")
		}
		return chat.Errorf(chat.EINVALID, "field %q must be %s", field, kindName(te.Type))
	default:
		return chat.Errorf(chat.EINVALID, "invalid JSON")
	}
}

func kindName(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64:
		return "a number"
	default:
		return "of another type"
	}
}

// params is a parsed query string. Unlike r.URL.Query it reports malformed
// escapes instead of dropping them silently.
type params struct{ v url.Values }

func parseParams(r *http.Request) (params, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return params{}, chat.Errorf(chat.EINVALID, "malformed query string")
	}
	return params{v}, nil
}

func (p params) str(name string) (string, error) {
	s := p.v.Get(name)
	if !utf8.ValidString(s) {
		return "", chat.Errorf(chat.EINVALID, "%s must be valid UTF-8", name)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", chat.Errorf(chat.EINVALID, "%s must not contain NUL", name)
	}
	return s, nil
}

// limit parses limit: 1..chat.MaxPageLimit, default 50. Out of range is an
// error rather than clamped, so a client learns the bound.
func (p params) limit() (int, error) {
	s := p.v.Get("limit")
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > chat.MaxPageLimit {
		return 0, chat.Errorf(chat.EINVALID, "limit must be an integer from 1 to %d", chat.MaxPageLimit)
	}
	return n, nil
}

// id parses an optional ID parameter; 0 when absent.
func (p params) id(name string) (chat.ID, error) {
	s := p.v.Get(name)
	if s == "" {
		return 0, nil
	}
	id, err := chat.ParseID(s)
	if err != nil {
		return 0, chat.Errorf(chat.EINVALID, "%s must be a positive decimal ID", name)
	}
	return id, nil
}

// time parses an optional RFC 3339 parameter; zero when absent.
func (p params) time(name string) (time.Time, error) {
	s := p.v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, chat.Errorf(chat.EINVALID, "%s must be an RFC 3339 timestamp", name)
	}
	return t.UTC(), nil
}

// timeRange parses from and to, refusing an empty or inverted range.
func (p params) timeRange() (from, to time.Time, err error) {
	if from, err = p.time("from"); err != nil {
		return
	}
	if to, err = p.time("to"); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		err = chat.Errorf(chat.EINVALID, "from must be before to")
	}
	return
}

func (p params) cursor() (string, error) {
	s, err := p.str("cursor")
	if err != nil {
		return "", err
	}
	if len(s) > maxCursorLen {
		return "", chat.Errorf(chat.EINVALID, "cursor is too long")
	}
	return s, nil
}

// pathID parses the {name} path segment. A malformed ID is 400 invalid on
// every path (documented in openapi.json): it cannot name any room, and
// telling the client its request is malformed is more useful than 404.
func pathID(r *http.Request, name, what string) (chat.ID, error) {
	id, err := chat.ParseID(r.PathValue(name))
	if err != nil {
		return 0, chat.Errorf(chat.EINVALID, "%s must be a positive decimal ID", what)
	}
	return id, nil
}

// validName checks a room name: not blank, within the text rules.
func validName(s string) error {
	if strings.TrimSpace(s) == "" {
		return chat.Errorf(chat.EINVALID, "name must not be empty")
	}
	return chat.ValidateText("name", s, chat.MaxRoomNameLen)
}

// validEmail is a light check: the user role owns the real rules, the edge
// only refuses what is plainly not an address.
func validEmail(s string) error {
	if s == "" {
		return nil
	}
	if err := chat.ValidateText("email", s, chat.MaxEmailLen); err != nil {
		return err
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n<>") {
		return chat.Errorf(chat.EINVALID, "email must be an address like name@example.com")
	}
	return nil
}
