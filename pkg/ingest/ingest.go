// Package ingest is the ingest role: it takes send requests off NATS,
// stamps them with IDs, appends them durably to the message log, acks the
// sender and fans the message out to the room.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/natsbus"
)

// NonceCache remembers which client nonces were stored (pkg/redis).
type NonceCache interface {
	// ClaimNonces claims (UserID, Nonce) for each message with a nonce;
	// result[i] is nil if msgs[i] may be stored (claimed now, or no nonce),
	// else the message first stored with that nonce.
	ClaimNonces(ctx context.Context, msgs []chat.Message, ttl time.Duration) ([]*chat.Message, error)
}

// RecentCache keeps each room's last acknowledged messages, so reads can
// include what the store has not caught up with (pkg/redis).
type RecentCache interface {
	AddRecent(ctx context.Context, msgs []chat.Message) error
}

// AsyncLog is a chat.Log that can start an append without waiting for it
// (pkg/jetstream). With one, the server pipelines: while a batch waits for
// durability, the next batch's nonces are claimed and its append started.
type AsyncLog interface {
	chat.Log
	// AppendAsync starts appending msgs after everything earlier calls
	// started, and returns a function that waits until all of msgs are
	// durable (nil) or at least one failed. wait must be called exactly
	// once; ctx bounds the wait.
	AppendAsync(ctx context.Context, msgs []chat.Message) (wait func() error)
}

// Config tunes the ingest server. Zero values take the defaults.
type Config struct {
	// Buffer is how many requests may wait for the batcher; when it is
	// full, new requests are refused at once. Default 8192.
	Buffer int
	// MaxBatch is the most requests appended in one Log.Append. Default 512.
	MaxBatch int
	// NonceTTL is how long a nonce is remembered (API.md: 10 minutes).
	NonceTTL time.Duration
	// AppendTimeout bounds one batch's nonce claim, append and cache
	// update. Default 10 s.
	AppendTimeout time.Duration
	// MaxRequestBytes refuses bigger request payloads before decoding.
	// Default 64 KiB, well above a 4,000-character body.
	MaxRequestBytes int
	// MaxInFlight is how many batches may wait for durability at once
	// when the log is an AsyncLog. Default 16.
	MaxInFlight int
	// MaxBacklog paces ingest to what persistence keeps up with: while
	// Deps.Backlog reports more than this (an in-process store or index
	// sink that far behind), each batch waits, up to MaxPause, for it to
	// catch up. Sends meanwhile wait in the buffer, and what waits too
	// long is refused unavailable, rather than the index falling ever
	// further behind under a load the node cannot persist. A backlog above
	// paceCeiling is a rebuild or a recovery, not overload, and is not
	// paced. Zero turns pacing off.
	MaxBacklog time.Duration
	// MaxPause bounds one batch's wait for the backlog. Default 250 ms.
	MaxPause time.Duration
	// Linger is how long a batch waits for more sends when the previous
	// batch began less than 4×Linger before (AsyncLog only), as a Kafka
	// producer's linger.ms: every log entry costs a store write, an ack
	// and a delivery to each consumer group whatever it holds, so under
	// load fewer, fuller entries cost less CPU per send, and less queueing
	// on a busy CPU more than repays the wait. Sends further apart than
	// that go at once, so sparse traffic never waits. Zero turns it off.
	Linger time.Duration
}

// paceCeiling: a sink further behind than this is catching up on old
// entries (an index rebuilt from the log, a store back from an outage);
// holding live sends back would not shorten that, only stall chat.
const paceCeiling = 30 * time.Second

// paceStep is how often a paused batch checks the backlog again.
const paceStep = 5 * time.Millisecond

func (c *Config) setDefaults() {
	if c.Buffer <= 0 {
		c.Buffer = 8192
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.NonceTTL <= 0 {
		c.NonceTTL = 10 * time.Minute
	}
	if c.AppendTimeout <= 0 {
		c.AppendTimeout = 10 * time.Second
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 64 << 10
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 16
	}
	if c.MaxPause <= 0 {
		c.MaxPause = 250 * time.Millisecond
	}
}

// Deps are the ingest server's collaborators. Nonces and Recent may be nil
// (no deduplication, no recent window).
type Deps struct {
	// NC takes send requests (chat.SubjectIngest), and carries the fanout
	// unless Bus is set.
	NC *nats.Conn
	// Bus carries each new message's room frame; nil: NATS on NC.
	Bus    chat.RoomBus
	Log    chat.Log
	IDs    *chat.IDGen
	Nonces NonceCache
	Recent RecentCache
	// Backlog, if set, reports how far behind the log the persistence
	// sinks of this process are (see Config.MaxBacklog).
	Backlog func() time.Duration
}

// Stats are the server's counters, for metrics.
type Stats struct {
	Received     int64         // requests taken into the buffer
	Appended     int64         // messages durably appended and acked
	Duplicates   int64         // requests answered with an earlier message of the same nonce
	RejectedBusy int64         // requests refused because the buffer was full
	Invalid      int64         // malformed requests
	Failed       int64         // requests answered unavailable after a failed append
	Batches      int64         // batches processed
	BufferLen    int           // requests waiting now
	Paused       time.Duration // total time batches waited for persistence to catch up
}

// request is one send waiting for its answer: on a NATS reply subject, or
// for an in-process caller (Server.Send) on local.
type request struct {
	req   chat.SendRequest
	reply string
	local chan result // buffered 1: the server never waits for the caller
}

type result struct {
	msg  chat.Message
	json []byte // msg.JSON(), encoded once for the answer and the fanout
	err  error
}

// Server is the ingest role.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	buf  chan request

	// closeMu guards buf against a send after Run closed it: in-process
	// callers (Send) are not stopped by draining the NATS subscription.
	closeMu sync.RWMutex
	closed  bool

	received, appended, duplicates atomic.Int64
	rejectedBusy, invalid, failed  atomic.Int64
	batches                        atomic.Int64
	paused                         atomic.Int64 // ns
}

// NewServer returns an ingest server; Run starts it.
func NewServer(cfg Config, deps Deps, log *slog.Logger) *Server {
	cfg.setDefaults()
	if deps.Bus == nil && deps.NC != nil {
		deps.Bus = natsbus.NewRooms(deps.NC)
	}
	return &Server{cfg: cfg, deps: deps, log: log.With("role", "ingest"), buf: make(chan request, cfg.Buffer)}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Received: s.received.Load(), Appended: s.appended.Load(), Duplicates: s.duplicates.Load(),
		RejectedBusy: s.rejectedBusy.Load(), Invalid: s.invalid.Load(), Failed: s.failed.Load(),
		Batches:   s.batches.Load(),
		BufferLen: len(s.buf),
		Paused:    time.Duration(s.paused.Load()),
	}
}

// Run serves requests until ctx ends, then stops taking new ones, finishes
// the buffered ones and returns.
func (s *Server) Run(ctx context.Context) error {
	sub, err := s.deps.NC.QueueSubscribe(chat.SubjectIngest, chat.QueueIngest, s.onRequest)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", chat.SubjectIngest, err)
	}
	// Make sure the server knows the subscription before we report ready
	// by running: a request sent right after must find a responder.
	if err := s.deps.NC.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe %s: %w", chat.SubjectIngest, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.batcher()
	}()
	<-ctx.Done()
	// Drain: the server stops sending us requests, and the callback runs
	// for those already delivered, so none is left unanswered.
	if err := sub.Drain(); err != nil {
		s.log.Warn("drain ingest subscription", "err", err)
	}
	for deadline := time.Now().Add(30 * time.Second); sub.IsValid() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	// No callback can push any more, and closed stops in-process
	// callers: let the batcher finish the buffer.
	s.closeMu.Lock()
	s.closed = true
	close(s.buf)
	s.closeMu.Unlock()
	<-done
	return nil
}

// enqueue hands r to the batcher without waiting; it fails unavailable if
// the buffer is full or the server has stopped.
func (s *Server) enqueue(r request) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return errStopped()
	}
	select {
	case s.buf <- r:
		s.received.Add(1)
		return nil
	default:
		s.rejectedBusy.Add(1)
		return errBusy()
	}
}

// onRequest runs on the subscription's goroutine and must never block:
// a slow append would otherwise stall delivery of every request.
func (s *Server) onRequest(m *nats.Msg) {
	if m.Reply == "" {
		return // not a request: no one to answer, nothing promised
	}
	if len(m.Data) > s.cfg.MaxRequestBytes {
		s.invalid.Add(1)
		s.respondErr(m.Reply, chat.Errorf(chat.EINVALID, "request too large"))
		return
	}
	// encoding/json would turn invalid UTF-8 into U+FFFD and store a body
	// the client never sent; API.md refuses it instead.
	var r chat.SendRequest
	if !utf8.Valid(m.Data) {
		s.invalid.Add(1)
		s.respondErr(m.Reply, chat.Errorf(chat.EINVALID, "request must be valid UTF-8"))
		return
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		s.invalid.Add(1)
		s.respondErr(m.Reply, chat.Errorf(chat.EINVALID, "malformed send request"))
		return
	}
	if err := validate(r); err != nil {
		s.invalid.Add(1)
		s.respondErr(m.Reply, err)
		return
	}
	if err := s.enqueue(request{req: r, reply: m.Reply}); err != nil {
		s.respondErr(m.Reply, err)
	}
}

func errBusy() error    { return chat.Errorf(chat.EUNAVAILABLE, "server busy, retry") }
func errStopped() error { return chat.Errorf(chat.EUNAVAILABLE, "no ingest available") }
func errNotAcked() error {
	// It may still be stored: only a retry with the same nonce is safe.
	return chat.Errorf(chat.EUNAVAILABLE, "not acknowledged; retry with the same nonce")
}

// Send implements chat.Sender in process: a gateway in the same process as
// the ingest role hands it sends directly, without the NATS request hop.
// It validates r as a request from the network would be, since it is the
// same contract. Use Local for a Sender with a timeout.
func (s *Server) Send(ctx context.Context, r chat.SendRequest) (chat.Message, error) {
	m, _, err := s.send(ctx, r, 0)
	return m, err
}

// send is Send that also returns the message's JSON, and gives up after
// timeout (if positive) as if ctx had ended. The timeout is a timer of its
// own rather than a context derived from ctx: deriving one registers it
// with ctx's cancellation and unregisters it again, on every send.
func (s *Server) send(ctx context.Context, r chat.SendRequest, timeout time.Duration) (chat.Message, []byte, error) {
	if err := validate(r); err != nil {
		s.invalid.Add(1)
		return chat.Message{}, nil, err
	}
	ch := make(chan result, 1)
	if err := s.enqueue(request{req: r, local: ch}); err != nil {
		return chat.Message{}, nil, err
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case res := <-ch:
		return res.msg, res.json, res.err
	case <-ctx.Done():
	case <-expired:
	}
	return chat.Message{}, nil, errNotAcked()
}

// Local returns a chat.Sender that calls s in process, bounding each send by
// timeout (default 5 s) like Client does over NATS.
func (s *Server) Local(timeout time.Duration) chat.EncodedSender {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return localSender{s: s, timeout: timeout}
}

type localSender struct {
	s       *Server
	timeout time.Duration
}

func (l localSender) Send(ctx context.Context, r chat.SendRequest) (chat.Message, error) {
	m, _, err := l.SendEncoded(ctx, r)
	return m, err
}

func (l localSender) SendEncoded(ctx context.Context, r chat.SendRequest) (chat.Message, []byte, error) {
	timeout := l.timeout
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(timeout)) {
		timeout = 0 // ctx ends first
	}
	return l.s.send(ctx, r, timeout)
}

// validate re-checks what the gateway checked: ingest is reachable by any
// NATS client, and a bad entry in the log is costly.
func validate(r chat.SendRequest) error {
	if r.RoomID <= 0 || r.UserID <= 0 {
		return chat.Errorf(chat.EINVALID, "room_id and user_id are required")
	}
	if err := chat.ValidateBody(r.Body); err != nil {
		return err
	}
	if len(r.Username) > chat.MaxUsernameLen {
		return chat.Errorf(chat.EINVALID, "invalid username")
	}
	return chat.ValidateNonce(r.Nonce)
}

// batcher takes batches off the buffer. With an AsyncLog it only starts
// each batch's append and leaves the wait for durability, the answers and
// the fanout to complete, so the next batch is claimed and appended while
// the previous one is still being made durable; batches are started and
// completed in buffer order either way.
func (s *Server) batcher() {
	var inflight chan *flight
	var done chan struct{}
	alog, async := s.deps.Log.(AsyncLog)
	if async {
		inflight = make(chan *flight, s.cfg.MaxInFlight)
		done = make(chan struct{})
		go func() {
			defer close(done)
			for f := range inflight {
				s.complete(f)
			}
		}()
	}
	scratch := make([]request, 0, s.cfg.MaxBatch)
	var last time.Time // when the previous batch began
	for r := range s.buf {
		scratch = s.fill(append(scratch[:0], r))
		now := time.Now()
		if async && s.cfg.Linger > 0 && len(scratch) < s.cfg.MaxBatch && now.Sub(last) < 4*s.cfg.Linger {
			time.Sleep(s.cfg.Linger)
			scratch = s.fill(scratch)
			now = time.Now()
		}
		last = now
		if s.pace() {
			// Sends that came in while the batch waited join it.
			scratch = s.fill(scratch)
		}
		// The flight keeps its batch while the next one is gathered:
		// copy it out at its own size (batches are small unless loaded).
		f := s.prepare(append([]request(nil), scratch...))
		clear(scratch) // drop references to answered requests
		if f == nil {
			continue
		}
		if !async {
			err := s.deps.Log.Append(f.ctx, f.toAppend)
			f.wait = func() error { return err }
			s.complete(f)
			continue
		}
		f.wait = alog.AppendAsync(f.ctx, f.toAppend)
		inflight <- f
	}
	if async {
		close(inflight)
		<-done
	}
}

// pace waits, up to MaxPause, while the in-process sinks are more than
// MaxBacklog (and less than paceCeiling) behind. It reports whether it
// waited.
func (s *Server) pace() bool {
	if s.deps.Backlog == nil || s.cfg.MaxBacklog <= 0 {
		return false
	}
	over := func() bool {
		b := s.deps.Backlog()
		return b > s.cfg.MaxBacklog && b < paceCeiling
	}
	if !over() {
		return false
	}
	start := time.Now()
	t := time.NewTicker(paceStep)
	defer t.Stop()
	for range t.C {
		if time.Since(start) >= s.cfg.MaxPause || !over() {
			break
		}
	}
	s.paused.Add(int64(time.Since(start)))
	return true
}

// fill adds to batch what the buffer holds, up to MaxBatch, without
// waiting.
func (s *Server) fill(batch []request) []request {
	for len(batch) < s.cfg.MaxBatch {
		select {
		case r, ok := <-s.buf:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// flight is one batch between the start of its append and its answers.
type flight struct {
	batch  []request
	msgs   []chat.Message  // msgs[i]: the new message request i would be
	answer []*chat.Message // answer[i]: what request i gets
	// toAppend is every distinct answer of the batch, appended again even
	// when it is an earlier message (see prepare); appendIdx[k] is the
	// request whose answer toAppend[k] is.
	toAppend  []chat.Message
	appendIdx []int
	ctx       context.Context
	cancel    context.CancelFunc
	wait      func() error
}

// prepare stamps a batch with IDs and claims its nonces. It returns nil if
// the batch was answered already (the claim failed). It does not use Run's
// context: buffered requests are finished after shutdown starts.
func (s *Server) prepare(batch []request) *flight {
	s.batches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendTimeout)
	f := &flight{batch: batch, ctx: ctx, cancel: cancel,
		msgs: make([]chat.Message, len(batch)), answer: make([]*chat.Message, len(batch))}
	msgs := f.msgs
	for i, r := range batch {
		id, at := s.deps.IDs.Next()
		msgs[i] = chat.Message{ID: id, RoomID: r.req.RoomID, UserID: r.req.UserID, Username: r.req.Username,
			Body: r.req.Body, CreatedAt: at, Nonce: r.req.Nonce}
	}

	// A nonce repeated inside the batch (a client retrying fast) is a
	// duplicate of its first occurrence here, whatever the cache does.
	type key struct {
		user  chat.ID
		nonce string
	}
	var firstInBatch map[key]int
	var dupOf map[int]int
	fresh := make([]int, 0, len(batch)) // indexes of messages to claim and append
	for i, m := range msgs {
		if m.Nonce != "" {
			if firstInBatch == nil {
				firstInBatch = make(map[key]int, len(batch))
			}
			k := key{m.UserID, m.Nonce}
			if j, ok := firstInBatch[k]; ok {
				if dupOf == nil {
					dupOf = map[int]int{}
				}
				dupOf[i] = j
				continue
			}
			firstInBatch[k] = i
		}
		fresh = append(fresh, i)
	}

	var prior []*chat.Message
	if s.deps.Nonces != nil {
		toClaim := make([]chat.Message, len(fresh))
		for k, i := range fresh {
			toClaim[k] = msgs[i]
		}
		var err error
		prior, err = s.deps.Nonces.ClaimNonces(ctx, toClaim, s.cfg.NonceTTL)
		if err != nil {
			// Without the claim a retried send could be stored twice;
			// refusing lets the client retry safely.
			s.log.Error("claim nonces failed", "err", err, "requests", len(batch))
			s.failAll(batch, chat.Errorf(chat.EUNAVAILABLE, "message not stored; retry with the same nonce"))
			cancel()
			return nil
		}
	}
	// Every request's answer is (re)appended. A repeated nonce is answered
	// with the first message, appended again under its own ID: if the first
	// send's append failed (wholly, or after part of the batch reached the
	// log), or is still on its way in an earlier batch, this makes the
	// message we ack durable before the ack, and since the log and every
	// store deduplicate by message ID, a second copy is harmless. The claim
	// is never released, so a retry can never be stored under a new ID next
	// to a copy that did reach the log.
	f.toAppend = make([]chat.Message, 0, len(fresh))
	f.appendIdx = make([]int, 0, len(fresh))
	for k, i := range fresh {
		f.answer[i] = &msgs[i]
		if prior != nil && prior[k] != nil {
			f.answer[i] = prior[k]
		}
		f.toAppend = append(f.toAppend, *f.answer[i])
		f.appendIdx = append(f.appendIdx, i)
	}
	for i, j := range dupOf {
		f.answer[i] = f.answer[j]
	}
	return f
}

// complete waits for a batch's append, then answers its requests and fans
// its new messages out.
func (s *Server) complete(f *flight) {
	defer f.cancel()
	if err := f.wait(); err != nil {
		s.log.Error("append failed", "err", err, "messages", len(f.toAppend))
		s.failAll(f.batch, chat.Errorf(chat.EUNAVAILABLE, "message not stored; retry with the same nonce"))
		return
	}
	s.appended.Add(int64(len(f.toAppend)))
	if s.deps.Recent != nil && len(f.toAppend) > 0 {
		if err := s.deps.Recent.AddRecent(f.ctx, f.toAppend); err != nil {
			// The message is durable; only a read racing the store misses
			// it for a moment. Failing the send now would make the client
			// resend a stored message.
			s.log.Warn("add recent failed", "err", err)
		}
	}

	// Encode each stored message once, only if someone needs the JSON:
	// it goes into NATS replies and the fanout frame alike.
	var encoded map[*chat.Message][]byte
	encode := func(p *chat.Message) []byte {
		if b, ok := encoded[p]; ok {
			return b
		}
		if encoded == nil {
			encoded = make(map[*chat.Message][]byte, len(f.batch))
		}
		b := p.JSON()
		encoded[p] = b
		return b
	}
	for i, r := range f.batch {
		p := f.answer[i]
		if p != &f.msgs[i] {
			s.duplicates.Add(1)
		}
		if r.local != nil {
			r.local <- result{msg: *p, json: encode(p)}
			continue
		}
		s.respondMsg(r.reply, encode(p))
	}
	for _, i := range f.appendIdx {
		m := f.answer[i]
		if m != &f.msgs[i] {
			// A repeat is not fanned out again: clients may render every
			// message frame they get. (Should the first attempt's append
			// have failed outright, other members see the message on their
			// next join or page instead of live; the sender has its ack.)
			continue
		}
		b := encode(m)
		frame := make([]byte, 0, len(b)+32)
		frame = append(frame, `{"type":"message","message":`...)
		frame = append(frame, b...)
		frame = append(frame, '}')
		// The nonce lets the sender's gateway put the ack before this frame.
		out := chat.RoomFrame{Type: "message", User: m.UserID, Nonce: m.Nonce, Data: frame}
		if err := s.deps.Bus.PublishRoom(m.RoomID, out); err != nil {
			// The message is stored and acked; live clients will get it
			// on their next join with since.
			s.log.Warn("fanout publish failed", "err", err, "room_id", m.RoomID)
		}
	}
}

func (s *Server) failAll(batch []request, err error) {
	for _, r := range batch {
		s.failed.Add(1)
		if r.local != nil {
			r.local <- result{err: err}
			continue
		}
		s.respondErr(r.reply, err)
	}
}

func (s *Server) respondMsg(reply string, msgJSON []byte) {
	b := make([]byte, 0, len(msgJSON)+16)
	b = append(b, `{"message":`...)
	b = append(b, msgJSON...)
	b = append(b, '}')
	if err := s.deps.NC.Publish(reply, b); err != nil {
		s.log.Warn("reply failed", "err", err)
	}
}

func (s *Server) respondErr(reply string, err error) {
	b, _ := json.Marshal(chat.IngestReply{Error: chat.ToWire(err)})
	if err := s.deps.NC.Publish(reply, b); err != nil {
		s.log.Warn("reply failed", "err", err)
	}
}

// Client sends messages to the ingest role over NATS.
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

var _ chat.Sender = (*Client)(nil)

// NewClient returns a chat.Sender that asks the ingest role on nc. timeout
// bounds each send (default 5 s) when ctx has no earlier deadline.
func NewClient(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Client{nc: nc, timeout: timeout}
}

// Send returns once the message is durably in the log, or the message first
// stored with the same nonce.
func (c *Client) Send(ctx context.Context, r chat.SendRequest) (chat.Message, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return chat.Message{}, fmt.Errorf("encode send request: %w", err)
	}
	ctx, cancel := chat.Bound(ctx, c.timeout)
	defer cancel()
	resp, err := c.nc.RequestWithContext(ctx, chat.SubjectIngest, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return chat.Message{}, errStopped()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.Canceled):
		return chat.Message{}, errNotAcked()
	case err != nil:
		return chat.Message{}, fmt.Errorf("ingest request: %w", err)
	}
	var rep chat.IngestReply
	if err := json.Unmarshal(resp.Data, &rep); err != nil {
		return chat.Message{}, fmt.Errorf("decode ingest reply: %w", err)
	}
	if rep.Error != nil {
		return chat.Message{}, rep.Error.Err()
	}
	if rep.Message == nil {
		return chat.Message{}, errors.New("ingest reply without message")
	}
	return *rep.Message, nil
}
