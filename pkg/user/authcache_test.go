package user

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
)

// fakeUsers is a UserService with sessions in memory. It counts
// Authenticate calls, and can hold an Authenticate (after it has read the
// session) or a Logout (before it revokes) until released.
type fakeUsers struct {
	chat.UserService
	mu       sync.Mutex
	sessions map[string]chat.Caller // by token hash
	calls    atomic.Int64

	authHold, authEntered     chan struct{} // non-nil: the next Authenticate waits
	logoutHold, logoutEntered chan struct{} // non-nil: the next Logout waits
}

func newFakeUsers() *fakeUsers {
	return &fakeUsers{sessions: map[string]chat.Caller{}}
}

// login opens a session for token and returns its hash.
func (f *fakeUsers) login(token string, id chat.ID) string {
	h := HashToken(token)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[h] = chat.Caller{User: chat.User{ID: id}, TokenHash: h, ExpiresAt: time.Now().Add(time.Hour)}
	return h
}

// revoke ends a session without telling the cache, as another node's
// Logout does until its control event arrives.
func (f *fakeUsers) revoke(tokenHash string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, tokenHash)
}

// holdAuth makes the next Authenticate wait, once it has read the session,
// until release is called; entered closes when it is waiting.
func (f *fakeUsers) holdAuth() (entered <-chan struct{}, release func()) {
	hold, ent := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.authHold, f.authEntered = hold, ent
	f.mu.Unlock()
	return ent, func() { close(hold) }
}

// holdLogout makes the next Logout wait, before it revokes, until release
// is called; entered closes when it is waiting.
func (f *fakeUsers) holdLogout() (entered <-chan struct{}, release func()) {
	hold, ent := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.logoutHold, f.logoutEntered = hold, ent
	f.mu.Unlock()
	return ent, func() { close(hold) }
}

func (f *fakeUsers) Authenticate(ctx context.Context, token string) (chat.Caller, error) {
	f.calls.Add(1)
	f.mu.Lock()
	c, ok := f.sessions[HashToken(token)]
	hold, entered := f.authHold, f.authEntered
	f.authHold, f.authEntered = nil, nil // hold one call only
	f.mu.Unlock()
	if hold != nil {
		close(entered)
		<-hold
	}
	if !ok {
		return chat.Caller{}, chat.Errorf(chat.EUNAUTHENTICATED, "invalid token")
	}
	return c, nil
}

func (f *fakeUsers) Logout(ctx context.Context, tokenHash string) error {
	f.mu.Lock()
	hold, entered := f.logoutHold, f.logoutEntered
	f.logoutHold, f.logoutEntered = nil, nil
	f.mu.Unlock()
	if hold != nil {
		close(entered)
		<-hold
	}
	f.revoke(tokenHash)
	return nil
}

func newTestAuthCache(f *fakeUsers) *AuthCache {
	return NewAuthCache(f, nil, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

type authResult struct {
	c   chat.Caller
	err error
}

// startAuth runs Authenticate in a goroutine; its result arrives on the
// returned channel.
func startAuth(a *AuthCache, token string) <-chan authResult {
	ch := make(chan authResult, 1)
	go func() {
		c, err := a.Authenticate(context.Background(), token)
		ch <- authResult{c, err}
	}()
	return ch
}

// wait receives from ch; the timeout only turns a hang into a failure.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting", what)
		panic("unreachable")
	}
}

// mustRefuse checks that token is refused and that the refusal came from
// the user role, not the cache.
func mustRefuse(t *testing.T, a *AuthCache, f *fakeUsers, token string) {
	t.Helper()
	before := f.calls.Load()
	c, err := a.Authenticate(context.Background(), token)
	if chat.ErrorCode(err) != chat.EUNAUTHENTICATED {
		t.Fatalf("revoked token: got caller %+v, err %v; want %s", c, err, chat.EUNAUTHENTICATED)
	}
	if got := f.calls.Load() - before; got != 1 {
		t.Fatalf("revoked token: %d calls to the user role, want 1", got)
	}
}

func TestAuthCacheHit(t *testing.T) {
	f := newFakeUsers()
	h := f.login("tok", 7)
	a := newTestAuthCache(f)
	for i := 0; i < 3; i++ {
		c, err := a.Authenticate(context.Background(), "tok")
		if err != nil || c.User.ID != 7 || c.TokenHash != h {
			t.Fatalf("Authenticate #%d = %+v, %v", i, c, err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d calls to the user role, want 1 (then cache hits)", n)
	}
}

func TestAuthCacheLogout(t *testing.T) {
	f := newFakeUsers()
	h := f.login("tok", 7)
	a := newTestAuthCache(f)
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, f, "tok")
}

// A revocation while a lookup is in flight, by a Logout on this node or by
// another node's control event (through the handler Run subscribes): the
// lookup read the session before the revoke, and must not cache it.
func TestAuthCacheRevokedDuringLookup(t *testing.T) {
	for name, revoke := range map[string]func(t *testing.T, a *AuthCache, f *fakeUsers, h string){
		"logout here": func(t *testing.T, a *AuthCache, _ *fakeUsers, h string) {
			if err := a.Logout(context.Background(), h); err != nil {
				t.Fatal(err)
			}
		},
		"event from another node": func(t *testing.T, a *AuthCache, f *fakeUsers, h string) {
			f.revoke(h) // the other node's Logout ...
			data, err := json.Marshal(chat.ControlEvent{Type: chat.EventSessionRevoked, TokenHash: h})
			if err != nil {
				t.Fatal(err)
			}
			a.onControl(&nats.Msg{Subject: chat.SubjectControl, Data: data}) // ... and its event
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeUsers()
			h := f.login("tok", 7)
			a := newTestAuthCache(f)

			entered, release := f.holdAuth()
			res := startAuth(a, "tok")
			wait(t, entered, "lookup start")
			revoke(t, a, f, h)
			release()
			// The in-flight lookup answers what it read; it began
			// before the revocation, so that is allowed.
			if r := wait(t, res, "lookup"); r.err != nil {
				t.Fatalf("in-flight lookup: %v", r.err)
			}
			mustRefuse(t, a, f, "tok")
		})
	}
}

// An Authenticate that runs between Logout's eviction and the user role's
// revoke sees the session still valid and caches it; Logout must not leave
// it cached.
func TestAuthCacheLookupBetweenEvictAndRevoke(t *testing.T) {
	f := newFakeUsers()
	h := f.login("tok", 7)
	a := newTestAuthCache(f)
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}

	entered, release := f.holdLogout()
	done := make(chan error, 1)
	go func() { done <- a.Logout(context.Background(), h) }()
	wait(t, entered, "logout start") // evicted, not yet revoked
	if _, err := a.Authenticate(context.Background(), "tok"); err != nil {
		t.Fatalf("Authenticate before the revoke: %v", err)
	}
	release()
	if err := wait(t, done, "logout"); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, f, "tok")
}

// The guard is coarse: evicting another token makes a concurrent lookup
// skip caching. That costs one more round trip, nothing else.
func TestAuthCacheOtherEvictionSkipsCaching(t *testing.T) {
	f := newFakeUsers()
	f.login("tok", 7)
	other := f.login("other", 8)
	a := newTestAuthCache(f)

	entered, release := f.holdAuth()
	res := startAuth(a, "tok")
	wait(t, entered, "lookup start")
	a.evict(other)
	release()
	if r := wait(t, res, "lookup"); r.err != nil || r.c.User.ID != 7 {
		t.Fatalf("lookup = %+v, %v", r.c, r.err)
	}
	for i := 0; i < 2; i++ {
		if c, err := a.Authenticate(context.Background(), "tok"); err != nil || c.User.ID != 7 {
			t.Fatalf("Authenticate = %+v, %v", c, err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d calls to the user role, want 2 (uncached, recached, hit)", n)
	}
}
