// Package user is the user role: registration, login, sessions and their
// revocation.
package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/redis"
)

// Config of the user role.
type Config struct {
	SessionTTL time.Duration // how long a login lasts
	// CacheTTL bounds how long a session stays in Redis before it is
	// re-read from the database.
	CacheTTL time.Duration
	// LoginLimit bounds login attempts per username; zero Rate disables it.
	LoginLimit redis.Limit
}

// Service implements chat.UserService.
type Service struct {
	cfg    Config
	store  chat.AccountStore
	cache  *redis.Cache
	events chat.EventPublisher
	ids    *chat.IDGen
	log    *slog.Logger

	// dummyHash is checked against when the username is unknown, so a
	// login takes as long whether or not the account exists.
	dummyOnce sync.Once
	dummyHash string
}

var _ chat.UserService = (*Service)(nil)

// New returns the user role.
func New(cfg Config, store chat.AccountStore, cache *redis.Cache, events chat.EventPublisher, ids *chat.IDGen, log *slog.Logger) *Service {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 30 * 24 * time.Hour
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	return &Service{cfg: cfg, store: store, cache: cache, events: events, ids: ids, log: log}
}

// HashToken returns the stored form of a bearer token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Register implements chat.UserService.
func (s *Service) Register(ctx context.Context, username, password, displayName, email string) (chat.User, error) {
	if err := chat.ValidateUsername(username); err != nil {
		return chat.User{}, err
	}
	if err := chat.ValidatePassword(password); err != nil {
		return chat.User{}, err
	}
	if err := chat.ValidateText("display_name", displayName, chat.MaxDisplayLen); err != nil {
		return chat.User{}, err
	}
	if err := chat.ValidateText("email", email, chat.MaxEmailLen); err != nil {
		return chat.User{}, err
	}
	if email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, " \t\r\n<>")) {
		return chat.User{}, chat.Errorf(chat.EINVALID, "email is not a valid address")
	}
	displayName = strings.TrimSpace(displayName)
	if displayName == "" {
		displayName = username
	}
	hash, err := HashPassword(password)
	if err != nil {
		return chat.User{}, err
	}
	id, now := s.ids.Next()
	u := chat.User{ID: id, Username: username, DisplayName: displayName, Email: email, CreatedAt: now}
	if err := s.store.CreateUser(ctx, u, hash); err != nil {
		return chat.User{}, err
	}
	s.log.Info("user registered", "user_id", u.ID, "username", u.Username)
	return u, nil
}

// Login implements chat.UserService.
func (s *Service) Login(ctx context.Context, username, password string) (string, chat.Session, chat.User, error) {
	bad := chat.Errorf(chat.EUNAUTHENTICATED, "wrong username or password")
	if len(username) > chat.MaxUsernameLen || len(password) > chat.MaxPasswordLen {
		return "", chat.Session{}, chat.User{}, bad
	}
	if s.cfg.LoginLimit.Rate > 0 {
		wait, err := s.cache.Allow(ctx, "login:"+username, s.cfg.LoginLimit)
		if err != nil {
			return "", chat.Session{}, chat.User{}, err
		}
		if wait > 0 {
			return "", chat.Session{}, chat.User{}, &chat.Error{Code: chat.ERATELIMITED, Message: "too many login attempts; try again later", RetryAfterMillis: wait.Milliseconds() + 1}
		}
	}
	u, hash, err := s.store.UserByUsername(ctx, username)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		s.dummyOnce.Do(func() { s.dummyHash, _ = HashPassword("not a real password") })
		CheckPassword(s.dummyHash, password)
		return "", chat.Session{}, chat.User{}, bad
	}
	if err != nil {
		return "", chat.Session{}, chat.User{}, err
	}
	if !CheckPassword(hash, password) {
		return "", chat.Session{}, chat.User{}, bad
	}
	raw := make([]byte, 32) // 256 bits
	if _, err := rand.Read(raw); err != nil {
		return "", chat.Session{}, chat.User{}, fmt.Errorf("read token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	now := time.Now().UTC()
	sess := chat.Session{TokenHash: HashToken(token), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return "", chat.Session{}, chat.User{}, err
	}
	s.log.Info("session opened", "user_id", u.ID)
	return token, sess, u, nil
}

// Logout implements chat.UserService: the session is deleted from the
// database and the cache, and every gateway is told to close its sockets.
func (s *Service) Logout(ctx context.Context, tokenHash string) error {
	if err := s.store.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	if err := s.cache.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	if s.events != nil {
		if err := s.events.PublishControl(chat.ControlEvent{Type: chat.EventSessionRevoked, TokenHash: tokenHash}); err != nil {
			return fmt.Errorf("publish revocation: %w", err)
		}
	}
	return nil
}

// Authenticate implements chat.UserService.
func (s *Service) Authenticate(ctx context.Context, token string) (chat.Caller, error) {
	unauth := chat.Errorf(chat.EUNAUTHENTICATED, "missing, invalid or expired session")
	if token == "" || len(token) > 256 {
		return chat.Caller{}, unauth
	}
	h := HashToken(token)
	if c, ok, err := s.cache.GetSession(ctx, h); err == nil && ok {
		if time.Now().Before(c.ExpiresAt) {
			return c, nil
		}
		return chat.Caller{}, unauth
	}
	sess, err := s.store.Session(ctx, h)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		return chat.Caller{}, unauth
	}
	if err != nil {
		return chat.Caller{}, err
	}
	if !time.Now().Before(sess.ExpiresAt) {
		return chat.Caller{}, unauth
	}
	u, err := s.store.UserByID(ctx, sess.UserID)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		return chat.Caller{}, unauth
	}
	if err != nil {
		return chat.Caller{}, err
	}
	c := chat.Caller{User: u, TokenHash: h, ExpiresAt: sess.ExpiresAt}
	if err := s.cache.PutSession(ctx, c, s.cfg.CacheTTL); err != nil {
		s.log.Warn("session cache write failed", "err", err)
	}
	return c, nil
}

// User implements chat.UserService.
func (s *Service) User(ctx context.Context, id chat.ID) (chat.User, error) {
	return s.store.UserByID(ctx, id)
}

// UserByName implements chat.UserService.
func (s *Service) UserByName(ctx context.Context, username string) (chat.User, error) {
	if chat.ValidateUsername(username) != nil {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "no such user")
	}
	u, _, err := s.store.UserByUsername(ctx, username)
	if chat.ErrorCode(err) == chat.ENOTFOUND {
		return chat.User{}, chat.Errorf(chat.ENOTFOUND, "no such user")
	}
	return u, err
}

// Run deletes expired sessions every hour until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.store.DeleteExpiredSessions(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("expired session cleanup failed", "err", err)
		} else if n > 0 {
			s.log.Info("expired sessions deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
