package distributed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
)

// TestDistributed starts the seven roles as separate processes (user+room,
// query, ingest, store, index and two gateways) and runs the scenarios on
// that one cluster, each in its own room.
func TestDistributed(t *testing.T) {
	c := startCluster(t)
	c.ns.cassandra(t) // one session for every scenario's direct reads
	t.Run("FanoutStoreAndSearchAcrossGateways", func(t *testing.T) { testFanout(t, c) })
	t.Run("StoreKilledMidStream", func(t *testing.T) { testStoreKilled(t, c) })
	t.Run("KafkaRestartUnderLoad", func(t *testing.T) { testKafkaRestart(t, c) })
}

// eventually polls f every 500ms until it reports done, and returns how
// long that took; f's note says what is still missing.
func eventually(t *testing.T, what string, within time.Duration, f func() (done bool, note string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		done, note := f()
		if done {
			return time.Since(start)
		}
		last = note
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, within, last)
	return 0
}

func waitAcks(t *testing.T, l load, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for l.acks() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d acks within %s", l.acks(), n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func perSecond(n int, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f/s", float64(n)/d.Seconds())
}

// word is a search term unique to one scenario of one run.
func (c *cluster) word(prefix string) string {
	return prefix + strings.TrimPrefix(c.ns.id, "dist_")
}

// 1. Register and log in on gateway A, create a room; a user on gateway B
// joins it over the WebSocket; a send over A's socket is acked, reaches B,
// is read back from B (message store) and found by search on A (index).
func testFanout(t *testing.T, c *cluster) {
	word := c.word("fan")
	a := register(t, c.gwA.base(), "ann")
	room := a.createRoom("across gateways")
	b := register(t, c.gwB.base(), "bob")

	inB := make(frames, 1024)
	wsB := b.dialWS(inB.handle)
	if err := wsB.send(map[string]any{"type": "join", "room_id": room.ID.String()}); err != nil {
		t.Fatal(err)
	}
	j := inB.next(t, 15*time.Second, func(f frame) bool { return f.Type == "joined" || f.Type == "error" })
	if j.Type != "joined" || j.RoomID != room.ID {
		t.Fatalf("join on gateway B: %+v", j)
	}

	inA := make(frames, 1024)
	wsA := a.dialWS(inA.handle)
	body := word + " hello from gateway a to gateway b"
	sentAt := time.Now()
	if err := wsA.send(map[string]any{"type": "send", "room_id": room.ID.String(), "body": body, "nonce": "n1"}); err != nil {
		t.Fatal(err)
	}
	ack := inA.next(t, 15*time.Second, func(f frame) bool { return (f.Type == "ack" || f.Type == "error") && f.Nonce == "n1" })
	ackAt := time.Now()
	if ack.Type != "ack" {
		t.Fatalf("send on gateway A answered %+v", ack)
	}
	msg, err := ack.message()
	if err != nil || msg.Body != body || msg.RoomID != room.ID || msg.UserID != a.me.ID {
		t.Fatalf("ack carries %+v (%v)", msg, err)
	}
	inB.next(t, 15*time.Second, func(f frame) bool {
		if f.Type != "message" {
			return false
		}
		m, err := f.message()
		return err == nil && m.ID == msg.ID && m.Body == body
	})
	gotAt := time.Now()
	t.Logf("FIGURE send→ack %s, ack→delivery on the other gateway %s", ackAt.Sub(sentAt).Round(time.Microsecond), gotAt.Sub(ackAt).Round(time.Microsecond))

	has := func(ms []chat.Message) bool {
		for _, m := range ms {
			if m.ID == msg.ID && m.Body == body {
				return true
			}
		}
		return false
	}
	d := eventually(t, "message in Cassandra", 60*time.Second, func() (bool, string) {
		ms, err := c.cassandraMessages(t, room.ID)
		return err == nil && has(ms), fmt.Sprintf("%d rows, err %v", len(ms), err)
	})
	t.Logf("FIGURE ack→row in Cassandra within %s", (gotAt.Sub(ackAt) + d).Round(time.Millisecond))
	eventually(t, "message via GET messages on gateway B", 30*time.Second, func() (bool, string) {
		ms, err := b.messages(room.ID)
		return err == nil && has(ms) && len(ms) == 1, fmt.Sprintf("%d messages, err %v", len(ms), err)
	})
	eventually(t, "message via GET search on gateway A", 60*time.Second, func() (bool, string) {
		total, hits, err := a.search(word, room.ID)
		return err == nil && has(hits) && total == 1, fmt.Sprintf("total %d, %d hits, err %v", total, len(hits), err)
	})
	t.Logf("FIGURE found by search %s after the ack", time.Since(ackAt).Round(time.Millisecond))
}

// 2. SIGKILL the store role while sends continue on both gateways, then
// restart it: once it has caught up, every acked message is in Cassandra
// exactly once.
func testStoreKilled(t *testing.T, c *cluster) {
	word := c.word("stk")
	u1 := register(t, c.gwA.base(), "kim")
	room := u1.createRoom("store kill")
	u2 := register(t, c.gwB.base(), "lee")
	// Each socket's sends are handled one after another (the gateway
	// acks in order), so throughput comes from several sockets per user.
	l := newLoad([]*user{u1, u2}, 4, word, room.ID, 16, 0)
	begin := time.Now()
	stop := l.start(t, 20_000)
	waitAcks(t, l, 1000, 60*time.Second)
	killAt := time.Now()
	before := l.acks()
	c.store.kill(t)
	time.Sleep(3 * time.Second)
	restartAt := time.Now()
	duringKill := l.acksBetween(killAt, restartAt)
	c.store.start(t)
	readyAt := time.Now()
	waitAcks(t, l, l.acks()+1000, 60*time.Second)
	stop()
	stoppedAt := time.Now()
	res := l.result()
	for _, o := range res.odd {
		t.Errorf("odd answer: %s", o)
	}
	t.Logf("FIGURE store kill: %d acked (%d before the kill at %s, %s while the store was down, %d failed: %v) over %s",
		len(res.acked), before, perSecond(before, killAt.Sub(begin)), perSecond(duringKill, restartAt.Sub(killAt)),
		sumFailures(res.failures), res.failures, stoppedAt.Sub(begin).Round(time.Millisecond))
	t.Logf("FIGURE store restart to ready: %s", readyAt.Sub(restartAt).Round(time.Millisecond))

	var got []chat.Message
	d := eventually(t, "every acked message in Cassandra", 3*time.Minute, func() (bool, string) {
		var err error
		got, err = c.cassandraMessages(t, room.ID)
		if err != nil {
			return false, err.Error()
		}
		missing, _ := res.check(got)
		return missing == 0, fmt.Sprintf("%d rows, %d acked messages missing", len(got), missing)
	})
	t.Logf("FIGURE store caught up %s after the last send (%s after its restart); %d rows for %d acked",
		d.Round(time.Millisecond), time.Since(readyAt).Round(time.Millisecond), len(got), len(res.acked))
	if _, prob := res.check(got); prob != "" {
		t.Errorf("Cassandra: %s", prob)
	}
	api, err := u2.messages(room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if missing, prob := res.check(api); missing > 0 || prob != "" {
		t.Errorf("GET messages on gateway B: %d acked missing; %s", missing, prob)
	}
	if len(api) != len(got) {
		t.Errorf("GET messages on gateway B pages %d messages, Cassandra holds %d", len(api), len(got))
	}
	if n := c.store.grep("write failed"); n > 0 {
		t.Logf("store log: %d 'write failed' lines", n)
	}
}

func sumFailures(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// testservers runs scripts/testservers/<script> with args, bounded.
func testservers(t *testing.T, logPath, script string, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(moduleRoot, "scripts", "testservers", script)}, args...)...)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, b)
	}
	return time.Since(start)
}

// 3. Restart Kafka while both gateways keep sending. Sends during the
// outage may fail with unavailable (they are not acked); once Kafka is
// back, every acked message is stored and searchable, none twice.
func testKafkaRestart(t *testing.T, c *cluster) {
	word := c.word("kfk")
	u1 := register(t, c.gwA.base(), "max")
	room := u1.createRoom("kafka restart")
	u2 := register(t, c.gwB.base(), "ned")
	l := newLoad([]*user{u1, u2}, 4, word, room.ID, 8, 2*time.Millisecond)
	scriptLog := filepath.Join(t.TempDir(), "kafka.sh.log")
	begin := time.Now()
	stop := l.start(t, 20_000)
	waitAcks(t, l, 1000, 60*time.Second)
	stopAt := time.Now()
	before := l.acks()

	kafkaDown := true
	t.Cleanup(func() {
		// Whatever happened, leave Kafka running for everyone else.
		if kafkaDown {
			testservers(t, scriptLog, "kafka.sh", "start")
		}
	})
	stopTook := testservers(t, scriptLog, "kafka.sh", "stop")
	time.Sleep(5 * time.Second)
	startTook := testservers(t, scriptLog, "kafka.sh", "start")
	kafkaDown = false
	upAt := time.Now()
	waitAcks(t, l, l.acks()+500, 2*time.Minute)
	stop()
	stoppedAt := time.Now()
	// The clients retry what failed, with the same nonce: a send that
	// reached the log after all must be answered with that message, not
	// stored a second time.
	retried := 0
	for _, s := range l {
		n, err := s.retryFailed()
		retried += n
		if err != nil {
			t.Errorf("retry: %v", err)
		}
	}
	for _, s := range l {
		if n := s.drain(30 * time.Second); n > 0 {
			t.Errorf("%s: %d retries unanswered after 30s", s.name, n)
		}
	}
	res := l.result()
	for _, o := range res.odd {
		t.Errorf("odd answer: %s", o)
	}
	for code, n := range res.failures {
		if code != "unavailable" {
			t.Errorf("%d sends failed with %q; only unavailable is expected while the log is down", n, code)
		}
	}
	retryFailed := 0
	for _, s := range l {
		s.mu.Lock()
		retryFailed += len(s.failed)
		s.mu.Unlock()
	}
	t.Logf("FIGURE retried %d failed sends with their nonces after recovery: %d of them failed again; ingest logged %d 'append failed'",
		retried, retryFailed, c.ingest.grep("append failed"))
	firstAck, _ := l.firstAckAfter(upAt)
	t.Logf("FIGURE kafka restart: %d sent, %d acked (%s before the outage), %d failed %v; stop took %s, start %s; "+
		"%d acks between stop and ready; first ack %s after Kafka was ready; %s after it",
		len(res.sent), len(res.acked), perSecond(before, stopAt.Sub(begin)), sumFailures(res.failures), res.failures,
		stopTook.Round(time.Millisecond), startTook.Round(time.Millisecond),
		l.acksBetween(stopAt, upAt), firstAck.Sub(upAt).Round(time.Millisecond),
		perSecond(l.acksBetween(upAt, stoppedAt), stoppedAt.Sub(upAt)))

	var stored []chat.Message
	d := eventually(t, "every acked message in Cassandra", 4*time.Minute, func() (bool, string) {
		var err error
		stored, err = c.cassandraMessages(t, room.ID)
		if err != nil {
			return false, err.Error()
		}
		missing, _ := res.check(stored)
		return missing == 0, fmt.Sprintf("%d rows, %d acked messages missing", len(stored), missing)
	})
	t.Logf("FIGURE store caught up %s after the last send; %d rows for %d acked (%d stored but not acked)",
		d.Round(time.Millisecond), len(stored), len(res.acked), len(stored)-len(res.acked))
	if _, prob := res.check(stored); prob != "" {
		t.Errorf("Cassandra: %s", prob)
	}
	var hits []chat.Message
	total, torn := 0, 0
	d = eventually(t, "every acked message searchable", 4*time.Minute, func() (bool, string) {
		var err error
		total, hits, err = u1.search(word, room.ID)
		if err != nil {
			return false, err.Error()
		}
		missing, _ := res.check(hits)
		// Search pages by score (search_after on _score, id): a refresh
		// between two pages re-scores every hit, so a listing taken while
		// documents still arrive can repeat or skip hits. Only a listing
		// that agrees with its own total says what the index holds.
		if missing == 0 && total != len(hits) {
			torn++
			return false, fmt.Sprintf("total %d but %d hits paged", total, len(hits))
		}
		return missing == 0, fmt.Sprintf("total %d, %d hits, %d acked messages missing", total, len(hits), missing)
	})
	t.Logf("FIGURE index caught up %s after the store; %d hits (total %d); %d search listings torn by a refresh while paging",
		d.Round(time.Millisecond), len(hits), total, torn)
	if _, prob := res.check(hits); prob != "" {
		t.Errorf("search: %s", prob)
	}
	if total != len(hits) {
		t.Errorf("search total %d, but %d hits paged", total, len(hits))
	}
	if !sameIDs(stored, hits) {
		t.Errorf("Cassandra holds %d messages, the index %d: not the same set", len(stored), len(hits))
	}
	api, err := u2.messages(room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if missing, prob := res.check(api); missing > 0 || prob != "" {
		t.Errorf("GET messages on gateway B: %d acked missing; %s", missing, prob)
	}
}

func sameIDs(a, b []chat.Message) bool {
	ids := func(ms []chat.Message) []chat.ID {
		out := make([]chat.ID, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	x, y := ids(a), ids(b)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
