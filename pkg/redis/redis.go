// Package redis is chatd's cache layer on Redis: the session cache, send
// rate limits, client-nonce claims and the window of recently acknowledged
// messages. The embedded mode runs miniredis in-process and talks to it
// through the same go-redis client as a real Redis, so sessions and rate
// limits have one code path for both; nonce claims and recent windows, the
// writes of every sent message, it keeps in native tables instead
// (nonceTable, recentTable), with the same results.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/chatd/chatd/pkg/chat"
)

// Config selects the Redis to use.
type Config struct {
	// URL of a Redis server (redis://host:port/db); empty runs miniredis
	// in-process.
	URL string
	// Prefix is put before every key, so several deployments can share a
	// Redis.
	Prefix string
	// RecentPerRoom is how many acknowledged messages per room are kept for
	// reads that must not wait for the store (join with since).
	RecentPerRoom int
	// RecentTTL bounds how long an idle room's window is kept.
	RecentTTL time.Duration
}

// Cache is the Redis-backed cache shared by the roles.
type Cache struct {
	rdb     goredis.UniversalClient
	limiter *redis_rate.Limiter
	mini    *miniredis.Miniredis // nil with a real Redis
	// exp expires the keys written with a TTL, which miniredis never does
	// itself; nil with a real Redis. See expiry.
	exp *expiry
	// nonces holds the nonce claims in embedded mode, in place of
	// miniredis keys; nil with a real Redis. See nonceTable.
	nonces *nonceTable
	// recent holds the rooms' recent windows in embedded mode, in place
	// of miniredis sorted sets; nil with a real Redis. See recentTable.
	recent  *recentTable
	prefix  string
	recentN int
	recentT time.Duration

	// untrimmed counts, per room, the messages added to its window since
	// this process last trimmed it, and when it last renewed the window's
	// TTL (see AddRecent). Used with a real Redis only.
	trimMu    sync.Mutex
	untrimmed map[chat.ID]windowUpkeep
}

type windowUpkeep struct {
	added   int       // messages added since the last trim
	renewed time.Time // the last EXPIRE sent
}

// maxTrimRooms bounds untrimmed; past it the counts start over, which only
// costs one early trim and TTL renewal per room.
const maxTrimRooms = 100_000

// Open connects to cfg.URL, or starts miniredis when it is empty, and checks
// that the server answers.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Cache, error) {
	c := &Cache{prefix: cfg.Prefix, recentN: cfg.RecentPerRoom, recentT: cfg.RecentTTL, untrimmed: map[chat.ID]windowUpkeep{}}
	if c.recentN <= 0 {
		c.recentN = chat.MaxSinceReplay
	}
	if c.recentT <= 0 {
		c.recentT = time.Hour
	}
	var opt *goredis.Options
	if cfg.URL == "" {
		m := miniredis.NewMiniRedis()
		// Loopback only: the embedded cache is this process's own.
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start embedded redis: %w", err)
		}
		c.mini = m
		db := m.DB(0) // go-redis's default DB, as opt leaves DB 0
		c.exp = newExpiry(func(k string) { db.Del(k) })
		c.nonces = newNonceTable(c.exp.clock)
		c.recent = newRecentTable(c.exp.clock, c.recentN, c.recentT)
		c.exp.also = func() int { return c.nonces.sweep() + c.recent.sweep() }
		c.exp.start(sweepEvery)
		srv := m.Server()
		opt = &goredis.Options{Addr: m.Addr(), Dialer: func(context.Context, string, string) (net.Conn, error) {
			// In process, skip the loopback TCP: see memConn.
			client, server := memConnPair()
			srv.ServeConn(server)
			return client, nil
		},
			// RESP2: go-redis then skips its per-reply check for RESP3
			// push notifications, which miniredis never sends.
			Protocol:        2,
			DisableIdentity: true,
		}
	} else {
		var err error
		opt, err = goredis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("parse redis url: %w", err)
		}
	}
	opt.PoolSize = 64
	c.rdb = goredis.NewClient(opt)
	c.limiter = redis_rate.NewLimiter(c.rdb)
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("ping redis: %w", err)
	}
	return c, nil
}

// Ping checks that Redis answers.
func (c *Cache) Ping(ctx context.Context) error { return c.rdb.Ping(ctx).Err() }

// Close closes the client and stops the embedded server and its sweeper.
func (c *Cache) Close() error {
	c.exp.close()
	err := c.rdb.Close()
	if c.mini != nil {
		c.mini.Close()
	}
	return err
}

func (c *Cache) key(parts ...string) string {
	k := c.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func unavailable(op string, err error) error {
	return fmt.Errorf("redis %s: %w: %w", op, chat.Errorf(chat.EUNAVAILABLE, "cache unavailable"), err)
}

// --- session cache ---

type cachedSession struct {
	User      chat.User `json:"user"`
	ExpiresAt int64     `json:"exp"`
}

// GetSession returns a cached caller for the token hash, if any.
func (c *Cache) GetSession(ctx context.Context, tokenHash string) (chat.Caller, bool, error) {
	b, err := c.rdb.Get(ctx, c.key("sess", tokenHash)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return chat.Caller{}, false, nil
	}
	if err != nil {
		return chat.Caller{}, false, unavailable("get session", err)
	}
	var s cachedSession
	if err := json.Unmarshal(b, &s); err != nil {
		return chat.Caller{}, false, nil // a bad entry is a miss
	}
	return chat.Caller{User: s.User, TokenHash: tokenHash, ExpiresAt: time.Unix(0, s.ExpiresAt).UTC()}, true, nil
}

// PutSession caches a caller for at most ttl (and never past its expiry).
func (c *Cache) PutSession(ctx context.Context, caller chat.Caller, ttl time.Duration) error {
	if left := time.Until(caller.ExpiresAt); left < ttl {
		ttl = left
	}
	if ttl <= 0 {
		return nil
	}
	b, _ := json.Marshal(cachedSession{User: caller.User, ExpiresAt: caller.ExpiresAt.UnixNano()})
	k := c.key("sess", caller.TokenHash)
	c.exp.track(k, ttl) // before the SET: see expiry
	if err := c.rdb.Set(ctx, k, b, ttl).Err(); err != nil {
		return unavailable("put session", err)
	}
	return nil
}

// DeleteSession drops a cached session.
func (c *Cache) DeleteSession(ctx context.Context, tokenHash string) error {
	if err := c.rdb.Del(ctx, c.key("sess", tokenHash)).Err(); err != nil {
		return unavailable("delete session", err)
	}
	return nil
}

// --- rate limits ---

// Limit is a rate: Rate events per Period with bursts of Burst.
type Limit = redis_rate.Limit

// rateKeyPrefix is what redis_rate puts before the key it is given.
const rateKeyPrefix = "rate:"

// rateTTL bounds the TTL redis_rate's script gives a bucket's key: it sets
// it, on an allowed event only, to ceil(reset_after) seconds, and an event is
// allowed only while reset_after <= Period*Burst/Rate (its burst offset).
// That is the limit's Period when Burst == Rate, longer when Burst > Rate.
// A second is added for the ceil and one more as margin.
func rateTTL(l Limit) time.Duration {
	d := l.Period
	if l.Rate > 0 && l.Burst > l.Rate {
		d = time.Duration(float64(l.Period) * float64(l.Burst) / float64(l.Rate))
	}
	return d.Truncate(time.Second) + 2*time.Second
}

// Allow takes one event from the bucket named key. It returns 0 when the
// event is allowed, else how long to wait.
func (c *Cache) Allow(ctx context.Context, key string, l Limit) (time.Duration, error) {
	k := c.key(key)
	// The script sets the key's TTL inside miniredis, where it never
	// counts down, so expire it here (before the script runs: see
	// expiry). Every call moves the deadline, refused ones too, so an
	// idle bucket's key goes rateTTL after its last event, never before
	// its Redis TTL would have run out. Were it deleted early, that would
	// only reset this one limiter (a full burst again), which is
	// acceptable; and kept late, its stored time is in the past, which
	// the script reads as a full bucket, the same as no key.
	c.exp.track(rateKeyPrefix+k, rateTTL(l))
	res, err := c.limiter.Allow(ctx, k, l)
	if err != nil {
		return 0, unavailable("rate limit", err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	if res.RetryAfter <= 0 {
		return time.Millisecond, nil
	}
	return res.RetryAfter, nil
}

// --- nonces ---

func (c *Cache) nonceKey(m chat.Message) string {
	return c.key("nonce", m.UserID.String(), m.Nonce)
}

// ClaimNonces claims (user, nonce) for each message that has a nonce, for
// ttl after its first claim. result[i] is nil when msgs[i] may be stored
// (claimed now, or no nonce), else the message first stored with that nonce
// (for a nonce repeated in msgs, its first message there).
//
// With a real Redis a claim is a SET NX of the message's JSON, in one round
// trip when every claim is new (a second one reads the messages of refused
// claims). The embedded cache keeps its claims in nonceTable instead, never
// in miniredis, with the same results.
func (c *Cache) ClaimNonces(ctx context.Context, msgs []chat.Message, ttl time.Duration) ([]*chat.Message, error) {
	if c.nonces != nil {
		// As go-redis does before a round trip.
		if err := ctx.Err(); err != nil && slices.ContainsFunc(msgs, func(m chat.Message) bool { return m.Nonce != "" }) {
			return nil, unavailable("claim nonces", err)
		}
		return c.nonces.claim(msgs, ttl), nil
	}
	out := make([]*chat.Message, len(msgs))
	pipe := c.rdb.Pipeline()
	type claim struct {
		i   int
		key string
		set *goredis.BoolCmd
	}
	var claims []claim
	var seen map[string]int
	for i, m := range msgs {
		if m.Nonce == "" {
			continue
		}
		k := c.nonceKey(m)
		if j, dup := seen[k]; dup {
			// Same nonce twice in one batch: the later is a duplicate of
			// the earlier.
			first := msgs[j]
			out[i] = &first
			continue
		}
		if seen == nil {
			seen = make(map[string]int, len(msgs))
		}
		seen[k] = i
		b := m.JSON()
		claims = append(claims, claim{i: i, key: k, set: pipe.SetNX(ctx, k, b, ttl)})
	}
	if len(claims) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("claim nonces", err)
	}
	// A refused claim is a retry: read the message it was first stored
	// with. Rare, so it costs a second round trip only when it happens.
	var gets []*goredis.StringCmd
	var refused []int
	for _, cl := range claims {
		if cl.set.Val() {
			continue
		}
		if gets == nil {
			pipe = c.rdb.Pipeline()
		}
		gets = append(gets, pipe.Get(ctx, cl.key))
		refused = append(refused, cl.i)
	}
	if gets == nil {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, unavailable("claim nonces", err)
	}
	for k, get := range gets {
		var first chat.Message
		if err := json.Unmarshal([]byte(get.Val()), &first); err != nil {
			// Unreadable (or expired in between): store the message
			// rather than lose it.
			continue
		}
		out[refused[k]] = &first
	}
	return out, nil
}

// --- recent window ---

func (c *Cache) recentKey(room chat.ID) string { return c.key("recent", room.String()) }

// AddRecent adds acknowledged messages to their rooms' windows, keeping at
// least the newest RecentPerRoom of each. A window is a sorted set whose
// members start with the zero-padded ID, so it stays in ID order (and trims
// the oldest) even when several ingest instances add out of order.
//
// Trimming is amortized: a room is trimmed the first time this process adds
// to it and then after every RecentPerRoom/8 messages it adds, so a window
// holds at most that many beyond RecentPerRoom per ingest instance. Readers
// merge and cut, so a few more old messages change nothing for them, while
// trimming on every add would cost miniredis a sort of the whole window.
//
// The embedded cache keeps its windows in recentTable instead, never in
// miniredis: the same messages in the same order, trimmed exactly, each
// kept until RecentTTL after its room's last add.
func (c *Cache) AddRecent(ctx context.Context, msgs []chat.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if c.recent != nil {
		if err := ctx.Err(); err != nil { // as go-redis does before a round trip
			return unavailable("add recent", err)
		}
		c.recent.add(msgs)
		return nil
	}
	pipe := c.rdb.Pipeline()
	byRoom := map[chat.ID][]goredis.Z{}
	var order []chat.ID
	for _, m := range msgs {
		if _, ok := byRoom[m.RoomID]; !ok {
			order = append(order, m.RoomID)
		}
		b := make([]byte, 0, idWidth+160+len(m.Body))
		b = appendPadID(b, m.ID)
		b = m.AppendJSON(b)
		byRoom[m.RoomID] = append(byRoom[m.RoomID], goredis.Z{Member: b})
	}
	// A window is trimmed every recentN/8 additions, and its TTL renewed
	// when it is trimmed or a quarter of the TTL has passed: the TTL
	// only has to outlive the window's last write by about recentT, and
	// an EXPIRE per batch and room was a third of the commands.
	every := max(1, c.recentN/8)
	now := time.Now()
	var expire []string
	c.trimMu.Lock()
	if len(c.untrimmed) >= maxTrimRooms {
		c.untrimmed = map[chat.ID]windowUpkeep{}
	}
	for _, room := range order {
		k := c.recentKey(room)
		pipe.ZAdd(ctx, k, byRoom[room]...)
		u, seen := c.untrimmed[room]
		u.added += len(byRoom[room])
		trim := !seen || u.added >= every
		if trim {
			pipe.ZRemRangeByRank(ctx, k, 0, int64(-c.recentN-1))
			u.added = 0
		}
		if trim || now.Sub(u.renewed) >= c.recentT/4 {
			pipe.Expire(ctx, k, c.recentT)
			expire = append(expire, k)
			u.renewed = now
		}
		c.untrimmed[room] = u
	}
	// Before the EXPIREs are sent: see expiry.
	c.exp.trackKeys(expire, c.recentT)
	c.trimMu.Unlock()
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable("add recent", err)
	}
	return nil
}

// RecentAfter returns the messages of the room's window with an ID above
// after, oldest first.
func (c *Cache) RecentAfter(ctx context.Context, room, after chat.ID) ([]chat.Message, error) {
	if c.recent != nil {
		if err := ctx.Err(); err != nil {
			return nil, unavailable("recent", err)
		}
		return c.recent.after(room, after), nil
	}
	vals, err := c.rdb.ZRangeByLex(ctx, c.recentKey(room), &goredis.ZRangeBy{Min: "[" + padID(after+1), Max: "+"}).Result()
	if err != nil {
		return nil, unavailable("recent", err)
	}
	return decodeRecent(vals), nil
}

// RecentBefore returns the newest limit messages of the room's window with
// an ID below before (0: no bound), oldest first. It reads only those
// entries, so a join does not decode the whole window.
func (c *Cache) RecentBefore(ctx context.Context, room, before chat.ID, limit int) ([]chat.Message, error) {
	if c.recent != nil {
		if err := ctx.Err(); err != nil {
			return nil, unavailable("recent", err)
		}
		return c.recent.before(room, before, limit), nil
	}
	max := "+"
	if before > 0 {
		max = "(" + padID(before)
	}
	vals, err := c.rdb.ZRevRangeByLex(ctx, c.recentKey(room), &goredis.ZRangeBy{Min: "-", Max: max, Count: int64(limit)}).Result()
	if err != nil {
		return nil, unavailable("recent", err)
	}
	slices.Reverse(vals) // oldest first
	return decodeRecent(vals), nil
}

// decodeRecent decodes window members (padded ID, then the message JSON) in
// order, skipping any that do not decode.
func decodeRecent(vals []string) []chat.Message {
	out := make([]chat.Message, 0, len(vals))
	for _, v := range vals {
		var m chat.Message
		if len(v) > idWidth && json.Unmarshal([]byte(v[idWidth:]), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

const idWidth = 19 // digits of the largest int64

// appendPadID appends id zero-padded to idWidth digits, so the window's
// members sort by ID.
func appendPadID(dst []byte, id chat.ID) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(id), 10)
	for i := len(s); i < idWidth; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

func padID(id chat.ID) string { return string(appendPadID(make([]byte, 0, idWidth), id)) }
