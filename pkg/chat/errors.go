package chat

import (
	"errors"
	"fmt"
)

// Error codes of the public API (API.md). Each maps to one HTTP status and is
// sent verbatim in WebSocket error frames.
const (
	EINVALID         = "invalid"         // 400
	EUNAUTHENTICATED = "unauthenticated" // 401
	EFORBIDDEN       = "forbidden"       // 403
	ENOTFOUND        = "not_found"       // 404
	ECONFLICT        = "conflict"        // 409
	ETOOLARGE        = "too_large"       // 413
	ERATELIMITED     = "rate_limited"    // 429
	EUNAVAILABLE     = "unavailable"     // 503
	EINTERNAL        = "internal"        // 500
)

// Error is an error a client may see: a code from the list above and a
// message safe to show (never SQL, paths or stack traces).
type Error struct {
	Code    string
	Message string
	// RetryAfterMillis is set on rate_limited errors.
	RetryAfterMillis int64
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the message of an
// *Error in its chain, or a generic text for internal errors, whose details
// must only reach the log.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// HTTPStatus maps an error code to its HTTP status.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return 400
	case EUNAUTHENTICATED:
		return 401
	case EFORBIDDEN:
		return 403
	case ENOTFOUND:
		return 404
	case ECONFLICT:
		return 409
	case ETOOLARGE:
		return 413
	case ERATELIMITED:
		return 429
	case EUNAVAILABLE:
		return 503
	default:
		return 500
	}
}
