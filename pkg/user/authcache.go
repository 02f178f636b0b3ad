package user

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// AuthCache wraps a UserService (local or a gRPC client) with an in-process
// cache of authenticated sessions, so the gateway does not pay a round trip
// per request (a LESSONS.md item). Revocations reach it on
// chat.SubjectControl, from any node, and evict at once.
type AuthCache struct {
	chat.UserService
	ttl time.Duration
	nc  *nats.Conn
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]authEntry // by token hash
}

type authEntry struct {
	caller chat.Caller
	until  time.Time
}

const maxAuthEntries = 100_000

// NewAuthCache returns the cache; ttl bounds how long a session is trusted
// without asking the user role again.
func NewAuthCache(users chat.UserService, nc *nats.Conn, ttl time.Duration, log *slog.Logger) *AuthCache {
	return &AuthCache{UserService: users, ttl: ttl, nc: nc, log: log, entries: map[string]authEntry{}}
}

// Authenticate answers from the cache when it can.
func (a *AuthCache) Authenticate(ctx context.Context, token string) (chat.Caller, error) {
	h := HashToken(token)
	now := time.Now()
	a.mu.Lock()
	e, ok := a.entries[h]
	a.mu.Unlock()
	if ok && now.Before(e.until) && now.Before(e.caller.ExpiresAt) {
		return e.caller, nil
	}
	c, err := a.UserService.Authenticate(ctx, token)
	if err != nil {
		return c, err
	}
	until := now.Add(a.ttl)
	a.mu.Lock()
	if len(a.entries) >= maxAuthEntries {
		// Crude but bounded: a full cache starts over rather than grow.
		a.entries = map[string]authEntry{}
	}
	a.entries[h] = authEntry{caller: c, until: until}
	a.mu.Unlock()
	return c, nil
}

// Logout revokes through the user role and evicts locally before
// returning, so this node refuses the token at once.
func (a *AuthCache) Logout(ctx context.Context, tokenHash string) error {
	a.evict(tokenHash)
	return a.UserService.Logout(ctx, tokenHash)
}

func (a *AuthCache) evict(tokenHash string) {
	a.mu.Lock()
	delete(a.entries, tokenHash)
	a.mu.Unlock()
}

// Run listens for revocations until ctx ends.
func (a *AuthCache) Run(ctx context.Context) error {
	sub, err := a.nc.Subscribe(chat.SubjectControl, func(m *nats.Msg) {
		var e chat.ControlEvent
		if json.Unmarshal(m.Data, &e) == nil && e.Type == chat.EventSessionRevoked {
			a.evict(e.TokenHash)
		}
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}
