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
	// epoch changes at every eviction. A lookup that started before an
	// eviction must not store what it read: the session may have been
	// revoked after the user role answered, and caching it would keep the
	// token working here until the TTL ends. The guard is coarse — any
	// eviction, of any token, makes a concurrent lookup skip caching — which
	// costs only a later round trip, as pkg/room's AccessCache does.
	epoch uint64
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
	epoch := a.epoch
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
	// An eviction since the lookup began may be this session's revocation:
	// answer this once, but do not cache it.
	if a.epoch == epoch {
		if len(a.entries) >= maxAuthEntries {
			// Crude but bounded: a full cache starts over rather than grow.
			a.entries = map[string]authEntry{}
		}
		a.entries[h] = authEntry{caller: c, until: until}
	}
	a.mu.Unlock()
	return c, nil
}

// Logout revokes through the user role and evicts locally before
// returning, so this node refuses the token at once.
//
// It evicts both before and after the revoke: the first keeps lookups
// already in flight from storing, the second drops whatever a lookup that
// ran between the first and the revoke (and saw the session still valid)
// stored. The second runs whatever the outcome: a failure may have come
// after the revoke (a lost reply), and a miss costs only a lookup.
func (a *AuthCache) Logout(ctx context.Context, tokenHash string) error {
	a.evict(tokenHash)
	err := a.UserService.Logout(ctx, tokenHash)
	a.evict(tokenHash)
	return err
}

// evict forgets tokenHash's session and keeps lookups in flight from
// caching theirs (see epoch).
func (a *AuthCache) evict(tokenHash string) {
	a.mu.Lock()
	a.epoch++
	delete(a.entries, tokenHash)
	a.mu.Unlock()
}

// Run listens for revocations until ctx ends.
func (a *AuthCache) Run(ctx context.Context) error {
	sub, err := a.nc.Subscribe(chat.SubjectControl, a.onControl)
	if err != nil {
		return err
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// onControl evicts a session revoked on any node.
func (a *AuthCache) onControl(m *nats.Msg) {
	var e chat.ControlEvent
	if json.Unmarshal(m.Data, &e) == nil && e.Type == chat.EventSessionRevoked {
		a.evict(e.TokenHash)
	}
}
