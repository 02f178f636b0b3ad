// Package distributed runs chatd as separate processes, one or two roles
// each, on the real servers of the integration tier (NATS, Kafka, Cassandra
// standing in for ScyllaDB, OpenSearch standing in for Elasticsearch,
// PostgreSQL, Redis), and checks the distributed promises end to end:
// fanout across gateways, reads from the store and the index, and no acked
// message lost or doubled when the store role is killed or Kafka restarts.
//
// Every run uses its own Kafka topic, Cassandra keyspace, OpenSearch index,
// PostgreSQL schema and Redis prefix, dropped afterwards (kept when
// CHATD_TEST_KEEP is set, which also keeps the process logs). Without the
// CHATD_TEST_* variables the tests skip.
package distributed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/scylla"
)

var (
	moduleRoot string // the chatd module, for scripts/testservers
	chatdBin   string // built once by TestMain when the servers are configured
)

// servers are the addresses the integration tier exports.
type servers struct {
	postgresDSN, redisURL, natsURL, kafkaBrokers, cassandraHosts, elasticURL, elasticFlavor string
	// The test Cassandra requires a login and takes TLS (its CA): the
	// store role's processes use both, as against a production ScyllaDB.
	cassandraUser, cassandraPassword, cassandraCA string
}

func serversFromEnv() (servers, []string) {
	s := servers{
		postgresDSN:       os.Getenv("CHATD_TEST_POSTGRES_DSN"),
		redisURL:          os.Getenv("CHATD_TEST_REDIS_URL"),
		natsURL:           os.Getenv("CHATD_TEST_NATS_URL"),
		kafkaBrokers:      os.Getenv("CHATD_TEST_KAFKA_BROKERS"),
		cassandraHosts:    os.Getenv("CHATD_TEST_CASSANDRA_HOSTS"),
		cassandraUser:     os.Getenv("CHATD_TEST_CASSANDRA_USERNAME"),
		cassandraPassword: os.Getenv("CHATD_TEST_CASSANDRA_PASSWORD"),
		cassandraCA:       os.Getenv("CHATD_TEST_CASSANDRA_TLS_CA"),
		elasticURL:        os.Getenv("CHATD_TEST_ELASTIC_URL"),
		elasticFlavor:     os.Getenv("CHATD_TEST_ELASTIC_FLAVOR"),
	}
	if s.elasticFlavor == "" {
		s.elasticFlavor = "elasticsearch"
	}
	var missing []string
	for name, v := range map[string]string{
		"CHATD_TEST_POSTGRES_DSN": s.postgresDSN, "CHATD_TEST_REDIS_URL": s.redisURL, "CHATD_TEST_NATS_URL": s.natsURL,
		"CHATD_TEST_KAFKA_BROKERS": s.kafkaBrokers, "CHATD_TEST_CASSANDRA_HOSTS": s.cassandraHosts, "CHATD_TEST_ELASTIC_URL": s.elasticURL,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	return s, missing
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if _, missing := serversFromEnv(); len(missing) == 0 {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			fmt.Fprintln(os.Stderr, "distributed: cannot find the module root:", err)
			return 1
		}
		moduleRoot = filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "chatd-distributed-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		chatdBin = filepath.Join(dir, "chatd")
		build := exec.Command("go", "build", "-o", chatdBin, "./cmd/chatd")
		build.Dir = moduleRoot
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "distributed: build chatd:", err)
			return 1
		}
	}
	return m.Run()
}

// namespace is one run's private slice of every shared server.
type namespace struct {
	srv                                      servers
	id                                       string
	pgSchema, topic, keyspace, index, prefix string
	pgDSN                                    string // the test DSN with search_path = pgSchema
	store                                    *scylla.Store
}

func newNamespace(t *testing.T) *namespace {
	t.Helper()
	srv, missing := serversFromEnv()
	if len(missing) > 0 {
		t.Skipf("distributed tests need real servers; unset: %s (source the env.sh of scripts/testservers/up.sh)", strings.Join(missing, ", "))
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := "dist_" + hex.EncodeToString(b)
	ns := &namespace{
		srv: srv, id: id,
		pgSchema: "chatd_" + id, topic: "chatd_" + id, keyspace: "chatd_" + id,
		index: "chatd-" + strings.ReplaceAll(id, "_", "-"), prefix: "chatd_" + id + ":",
	}
	ns.pgDSN = withSearchPath(srv.postgresDSN, ns.pgSchema)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// chatd creates no schema of its own when only search_path names one.
	conn, err := pgx.Connect(ctx, srv.postgresDSN)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{ns.pgSchema}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Logf("namespace %s: topic %s, keyspace %s, index %s, schema %s, redis prefix %s", id, ns.topic, ns.keyspace, ns.index, ns.pgSchema, ns.prefix)
	t.Cleanup(func() {
		if os.Getenv("CHATD_TEST_KEEP") != "" {
			t.Logf("CHATD_TEST_KEEP: leaving namespace %s in place", id)
			return
		}
		ns.drop(t)
	})
	return ns
}

// withSearchPath adds search_path to a URL or key=value DSN; pgx sends it
// as a startup parameter, so every pooled connection uses the schema.
func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func (ns *namespace) scyllaConfig() scylla.Config {
	return scylla.Config{Hosts: splitList(ns.srv.cassandraHosts), Keyspace: ns.keyspace,
		Username: ns.srv.cassandraUser, Password: ns.srv.cassandraPassword}
}

// cassandra returns a store client on the run's keyspace, to read what the
// store role wrote without going through the query role's Redis merge.
func (ns *namespace) cassandra(t *testing.T) *scylla.Store {
	t.Helper()
	if ns.store == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := scylla.Open(ctx, ns.scyllaConfig(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("open cassandra: %v", err)
		}
		ns.store = s
		t.Cleanup(func() { s.Close() })
	}
	return ns.store
}

// drop removes everything the run created, best effort.
func (ns *namespace) drop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	if conn, err := pgx.Connect(ctx, ns.srv.postgresDSN); err == nil {
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{ns.pgSchema}.Sanitize()+" CASCADE")
		errs = append(errs, err)
		conn.Close(ctx)
	} else {
		errs = append(errs, err)
	}
	if cl, err := kgo.NewClient(kgo.SeedBrokers(splitList(ns.srv.kafkaBrokers)...)); err == nil {
		_, err = kadm.NewClient(cl).DeleteTopic(ctx, ns.topic)
		errs = append(errs, err)
		cl.Close()
	} else {
		errs = append(errs, err)
	}
	cluster := gocql.NewCluster(splitList(ns.srv.cassandraHosts)...)
	cluster.Timeout = 30 * time.Second
	if ns.srv.cassandraUser != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: ns.srv.cassandraUser, Password: ns.srv.cassandraPassword}
	}
	if s, err := cluster.CreateSession(); err == nil {
		errs = append(errs, s.Query("DROP KEYSPACE IF EXISTS "+ns.keyspace).WithContext(ctx).Exec())
		s.Close()
	} else {
		errs = append(errs, err)
	}
	if req, err := http.NewRequestWithContext(ctx, "DELETE", strings.TrimSuffix(ns.srv.elasticURL, "/")+"/"+ns.index, nil); err == nil {
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		} else {
			errs = append(errs, err)
		}
	}
	if opt, err := goredis.ParseURL(ns.srv.redisURL); err == nil {
		rc := goredis.NewClient(opt)
		iter := rc.Scan(ctx, 0, ns.prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) && len(keys) < 1_000_000 {
			keys = append(keys, iter.Val())
		}
		errs = append(errs, iter.Err())
		for i := 0; i < len(keys); i += 500 {
			errs = append(errs, rc.Del(ctx, keys[i:min(i+500, len(keys))]...).Err())
		}
		rc.Close()
	} else {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Logf("cleaning up namespace %s: %v", ns.id, err)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Environment groups: each process gets the shared settings plus those of
// the backends its roles use, as an operator would configure it.
func (ns *namespace) commonEnv() []string {
	level := "info"
	if l := os.Getenv("CHATD_TEST_LOG_LEVEL"); l != "" {
		level = l // e.g. debug, to see the Kafka client's group membership
	}
	return []string{
		"CHATD_LOG_FORMAT=text", "CHATD_LOG_LEVEL=" + level,
		"CHATD_NATS_URLS=" + ns.srv.natsURL,
		"CHATD_REDIS_URL=" + ns.srv.redisURL, "CHATD_REDIS_PREFIX=" + ns.prefix,
		"CHATD_LIMITS_SEND_RATE=0", "CHATD_LIMITS_LOGIN_RATE=0",
	}
}

func (ns *namespace) databaseEnv() []string {
	return []string{"CHATD_DATABASE_BACKEND=postgres", "CHATD_DATABASE_POSTGRES_DSN=" + ns.pgDSN}
}

func (ns *namespace) logEnv() []string {
	return []string{"CHATD_EVENTLOG_BACKEND=kafka", "CHATD_KAFKA_BROKERS=" + ns.srv.kafkaBrokers,
		"CHATD_KAFKA_TOPIC=" + ns.topic, "CHATD_KAFKA_PARTITIONS=4", "CHATD_KAFKA_REPLICATION_FACTOR=1"}
}

func (ns *namespace) storeEnv() []string {
	env := []string{"CHATD_STORE_BACKEND=scylla", "CHATD_SCYLLA_HOSTS=" + ns.srv.cassandraHosts, "CHATD_SCYLLA_KEYSPACE=" + ns.keyspace,
		"CHATD_SCYLLA_USERNAME=" + ns.srv.cassandraUser, "CHATD_SCYLLA_PASSWORD=" + ns.srv.cassandraPassword}
	if ns.srv.cassandraCA != "" {
		env = append(env, "CHATD_SCYLLA_TLS_ENABLED=true", "CHATD_SCYLLA_TLS_CA_FILE="+ns.srv.cassandraCA)
	}
	return env
}

func (ns *namespace) searchEnv() []string {
	return []string{"CHATD_SEARCH_BACKEND=elasticsearch", "CHATD_ELASTICSEARCH_ADDRESSES=" + ns.srv.elasticURL,
		"CHATD_ELASTICSEARCH_FLAVOR=" + ns.srv.elasticFlavor, "CHATD_ELASTICSEARCH_INDEX=" + ns.index}
}

// baseEnv is this process's environment without any CHATD_ setting, so a
// developer's own configuration cannot leak into the cluster.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHATD_") {
			out = append(out, kv)
		}
	}
	return out
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one chatd process; it can be killed and started again with the
// same configuration and log file.
type proc struct {
	name     string
	env      []string
	httpAddr string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

func (p *proc) base() string { return "http://" + p.httpAddr }

// start runs the process and waits until /readyz answers 200.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.startAsync(); err != nil {
		t.Fatalf("start %s: %v\n%s", p.name, err, p.tail(40))
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s survived SIGKILL for 30s", p.name)
	}
}

// stop asks for a graceful shutdown, then kills after a bound.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// grep counts the log lines containing s.
func (p *proc) grep(s string) int {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte(s))
}

// cluster is the whole system split over seven processes.
type cluster struct {
	ns                                         *namespace
	userRoom, query, ingest, store, index, gwA *proc
	gwB                                        *proc
	procs                                      []*proc
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ns := newNamespace(t)
	logDir := t.TempDir()
	if os.Getenv("CHATD_TEST_KEEP") != "" {
		d, err := os.MkdirTemp("", "chatd-distributed-logs-")
		if err != nil {
			t.Fatal(err)
		}
		logDir = d
	}
	c := &cluster{ns: ns}
	newProc := func(name, roles string, nodeID int, extra ...[]string) *proc {
		p := &proc{name: name, httpAddr: freeAddr(t), logPath: filepath.Join(logDir, name+".log")}
		p.env = append(baseEnv(), ns.commonEnv()...)
		p.env = append(p.env, "CHATD_ROLES="+roles, fmt.Sprintf("CHATD_NODE_ID=%d", nodeID),
			"CHATD_HTTP_ADDR="+p.httpAddr, "CHATD_DATA_DIR="+filepath.Join(logDir, name+"-data"))
		for _, e := range extra {
			p.env = append(p.env, e...)
		}
		c.procs = append(c.procs, p)
		return p
	}
	// Everything stops before the namespace is dropped (cleanups run last
	// registered first), and the logs are shown if anything failed.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range c.procs {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("---- last lines of %s (%s) ----\n%s", p.name, p.logPath, p.tail(40))
			}
		}
	})

	// Schemas first, with the full backend configuration, as an operator
	// would before starting the services.
	migrateEnv := append(append(append(append(baseEnv(), ns.commonEnv()...), ns.databaseEnv()...), ns.storeEnv()...), ns.searchEnv()...)
	migrateEnv = append(migrateEnv, "CHATD_DATA_DIR="+filepath.Join(logDir, "migrate-data"))
	mctx, mcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer mcancel()
	mig := exec.CommandContext(mctx, chatdBin, "migrate")
	mig.Env = migrateEnv
	start := time.Now()
	if out, err := mig.CombinedOutput(); err != nil {
		t.Fatalf("chatd migrate: %v\n%s", err, out)
	}
	t.Logf("chatd migrate: %s", time.Since(start).Round(time.Millisecond))

	urAddr, queryAddr := freeAddr(t), freeAddr(t)
	c.userRoom = newProc("user-room", "user,room", 1, ns.databaseEnv(), []string{"CHATD_GRPC_ADDR=" + urAddr})
	c.query = newProc("query", "query", 2, ns.storeEnv(), ns.searchEnv(),
		[]string{"CHATD_GRPC_ADDR=" + queryAddr, "CHATD_GRPC_ROOM_ADDR=" + urAddr, "CHATD_GRPC_USER_ADDR=" + urAddr})
	c.ingest = newProc("ingest", "ingest", 3, ns.logEnv())
	c.store = newProc("store", "store", 4, ns.logEnv(), ns.storeEnv())
	c.index = newProc("index", "index", 5, ns.logEnv(), ns.searchEnv())
	gwEnv := []string{"CHATD_GRPC_USER_ADDR=" + urAddr, "CHATD_GRPC_ROOM_ADDR=" + urAddr, "CHATD_GRPC_QUERY_ADDR=" + queryAddr}
	c.gwA = newProc("gateway-a", "gateway", 6, gwEnv)
	c.gwB = newProc("gateway-b", "gateway", 7, gwEnv)

	start = time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for _, p := range c.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.startAsync(); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v\n%s", p.name, err, p.tail(40)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("cluster did not start:\n%s", strings.Join(failed, "\n"))
	}
	t.Logf("7 processes ready in %s (logs in %s)", time.Since(start).Round(time.Millisecond), logDir)
	return c
}

// startAsync is start for use off the test goroutine: it reports instead
// of failing the test.
func (p *proc) startAsync() (err error) {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.starts++
	fmt.Fprintf(f, "=== start %d of %s at %s ===\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(chatdBin, "serve")
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		f.Close()
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== %s exited at %s: %v ===\n", p.name, time.Now().UTC().Format(time.RFC3339Nano), err)
		f.Close()
		close(done)
	}()
	cl := &http.Client{Timeout: 3 * time.Second}
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); {
		select {
		case <-done:
			return errors.New("exited before it was ready")
		default:
		}
		if res, err := cl.Get(p.base() + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("not ready within 120s")
}

// cassandraMessages reads every message of room straight from the
// keyspace, newest page first, returned oldest first.
func (c *cluster) cassandraMessages(t *testing.T, room chat.ID) ([]chat.Message, error) {
	st := c.ns.cassandra(t)
	var all []chat.Message
	before := chat.ID(0)
	for range 10_000 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		page, err := st.MessagesBefore(ctx, room, before, 1000)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		all = append(page, all...)
		before = page[0].ID
	}
	return all, nil
}
