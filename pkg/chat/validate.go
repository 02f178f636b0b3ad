package chat

import (
	"strings"
	"unicode/utf8"
)

// Limits of user input that are part of the API contract.
const (
	MaxBodyChars   = 4000
	MinUsernameLen = 3
	MaxUsernameLen = 32
	MinPasswordLen = 8
	MaxPasswordLen = 1024 // bounds the cost of hashing
	MaxRoomNameLen = 100
	MaxRoomDescLen = 1000
	MaxNonceLen    = 128
	MaxDisplayLen  = 64
	MaxEmailLen    = 254
	MaxSearchLen   = 500
	MaxPageLimit   = 200
	LatestOnJoin   = 10
	MaxSinceReplay = 1000
)

// ValidateUsername checks the 3–32 of [a-z0-9_.-] rule.
func ValidateUsername(s string) error {
	if len(s) < MinUsernameLen || len(s) > MaxUsernameLen {
		return Errorf(EINVALID, "username must be %d to %d characters", MinUsernameLen, MaxUsernameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return Errorf(EINVALID, "username may contain only a-z, 0-9, '_', '.' and '-'")
		}
	}
	return nil
}

// ValidatePassword checks the length rules and UTF-8.
func ValidatePassword(s string) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "password must be valid UTF-8")
	}
	if utf8.RuneCountInString(s) < MinPasswordLen {
		return Errorf(EINVALID, "password must be at least %d characters", MinPasswordLen)
	}
	if len(s) > MaxPasswordLen {
		return Errorf(EINVALID, "password must be at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// ValidateText checks an optional free-text field (display name, room name,
// description): valid UTF-8, no NUL, at most max characters.
func ValidateText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s must be valid UTF-8", field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Errorf(EINVALID, "%s must not contain NUL", field)
	}
	if utf8.RuneCountInString(s) > max {
		return Errorf(EINVALID, "%s must be at most %d characters", field, max)
	}
	return nil
}

// ValidateBody checks a message body: valid UTF-8, 1 to MaxBodyChars
// characters after trimming white space. The body itself is stored as sent.
func ValidateBody(s string) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "body must be valid UTF-8")
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return Errorf(EINVALID, "body must not be empty")
	}
	if len(s) > MaxBodyChars*4 || utf8.RuneCountInString(t) > MaxBodyChars {
		return Errorf(ETOOLARGE, "body must be at most %d characters", MaxBodyChars)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Errorf(EINVALID, "body must not contain NUL")
	}
	return nil
}

// ValidateNonce checks a client nonce: optional, printable, bounded.
func ValidateNonce(s string) error {
	if len(s) > MaxNonceLen {
		return Errorf(EINVALID, "nonce must be at most %d bytes", MaxNonceLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return Errorf(EINVALID, "nonce must be printable")
		}
	}
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "nonce must be valid UTF-8")
	}
	return nil
}
