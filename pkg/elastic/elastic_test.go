package elastic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/chattest"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// testConfig returns the address of a real Elasticsearch or OpenSearch, or
// skips: this is the integration tier, run after scripts/testservers/up.sh.
func testConfig(tb testing.TB) Config {
	tb.Helper()
	url := os.Getenv("CHATD_TEST_ELASTIC_URL")
	if url == "" {
		tb.Skip("CHATD_TEST_ELASTIC_URL not set")
	}
	return Config{Addresses: strings.Split(url, ","), Flavor: os.Getenv("CHATD_TEST_ELASTIC_FLAVOR")}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// openIndex opens and migrates a fresh index, deleted at cleanup.
func openIndex(tb testing.TB, cfg Config) *Index {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	cfg.Index = "chatd-test-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ix, err := Open(ctx, cfg, testLogger())
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	if err := ix.Migrate(ctx); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := esapi.IndicesDeleteRequest{Index: []string{cfg.Index}}.Do(ctx, ix.es)
		if err != nil {
			tb.Logf("delete index: %v", err)
		} else {
			drain(res)
		}
		ix.Close()
	})
	return ix
}

func TestSearchIndexConformance(t *testing.T) {
	cfg := testConfig(t)
	chattest.SearchIndex(t, func(t *testing.T) chat.SearchIndex { return openIndex(t, cfg) })
}

// TestMigrateTwice checks that Migrate on an existing index succeeds, as it
// does at every start-up.
func TestMigrateTwice(t *testing.T) {
	ix := openIndex(t, testConfig(t))
	if err := ix.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

// TestBulkSplit indexes more messages than one bulk request may carry, by
// count and by bytes, and checks every one arrives.
func TestBulkSplit(t *testing.T) {
	cfg := testConfig(t)
	cfg.BulkMaxDocs = 7
	cfg.BulkMaxBytes = 4 << 10
	ix := openIndex(t, cfg)
	ctx := context.Background()
	g, _ := chat.NewIDGen(2)
	room, _ := g.Next()
	var msgs []chat.Message
	for i := range 60 {
		id, at := g.Next()
		body := "split " + strings.Repeat("y", i*30)
		msgs = append(msgs, chat.Message{ID: id, RoomID: room, UserID: 1, Username: "u", Body: body, CreatedAt: at})
	}
	if err := ix.IndexMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := ix.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := ix.History(ctx, chat.HistoryQuery{RoomID: room, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != len(msgs) {
		t.Fatalf("%d of %d messages indexed", len(page.Messages), len(msgs))
	}
}

// TestBulkItemErrorFails checks that a document the server rejects fails
// the call, so the log consumer retries instead of committing past it.
func TestBulkItemErrorFails(t *testing.T) {
	ix := openIndex(t, testConfig(t))
	// A field the strict mapping does not know is rejected per item.
	body := `{"create":{"_index":"` + ix.cfg.Index + `","_id":"1"}}` + "\n" + `{"id":"1","unknown_field":1}` + "\n"
	if err := ix.bulk(context.Background(), []byte(body), 1); err == nil || !strings.Contains(err.Error(), "1 of 1") {
		t.Fatalf("bulk with a rejected document: %v, want an error", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addresses: []string{"http://x"}, Flavor: "solr"},
		{Addresses: []string{"http://x"}, Index: "Upper"},
	} {
		if _, err := Open(context.Background(), cfg, nil); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := encodeCursor("s", []json.Number{"1.2345678", "734019293849102337"})
	got, err := decodeCursor("s", c, 2)
	if err != nil || got[0] != "1.2345678" || got[1] != "734019293849102337" {
		t.Fatalf("decodeCursor = %v, %v", got, err)
	}
	if _, err := decodeCursor("h", c, 1); chat.ErrorCode(err) != chat.EINVALID {
		t.Fatalf("a search cursor used for history: %v, want invalid", err)
	}
}

// TestUnreachableIsUnavailable checks that a cluster that cannot be reached
// gives clients a retryable unavailable error, not an internal one.
func TestUnreachableIsUnavailable(t *testing.T) {
	ix, err := Open(context.Background(), Config{Addresses: []string{"http://127.0.0.1:1"}, Flavor: FlavorOpenSearch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = ix.Search(ctx, chat.SearchQuery{Text: "x", RoomIDs: []chat.ID{1}})
	if chat.ErrorCode(err) != chat.EUNAVAILABLE {
		t.Fatalf("Search on an unreachable cluster: %v (code %s), want unavailable", err, chat.ErrorCode(err))
	}
}

// TestOpenSearchFlavor checks that the v8 client accepts a server that does
// not claim to be Elasticsearch only with the opensearch flavor
// (elastic/go-elasticsearch#515), and that it then sends plain JSON.
func TestOpenSearchFlavor(t *testing.T) {
	var accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"hits":{"total":{"value":0},"hits":[]}}`))
	}))
	defer srv.Close()
	t.Setenv("ELASTIC_CLIENT_APIVERSIONING", "true")
	q := chat.SearchQuery{Text: "x", RoomIDs: []chat.ID{1}}

	strict, err := Open(context.Background(), Config{Addresses: []string{srv.URL}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Search(context.Background(), q); err == nil {
		t.Fatal("elasticsearch flavor accepted a server without X-Elastic-Product")
	}

	lenient, err := Open(context.Background(), Config{Addresses: []string{srv.URL}, Flavor: FlavorOpenSearch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lenient.Search(context.Background(), q); err != nil {
		t.Fatalf("opensearch flavor: %v", err)
	}
	if strings.Contains(accept, "vnd.elasticsearch") {
		t.Fatalf("opensearch flavor sent Accept %q", accept)
	}
}

// TestSearchPagingStableWhileIndexing: messages indexed between two page
// requests must not make a listing repeat or skip hits (search_after on
// the score did, since every hit is re-scored).
func TestSearchPagingStableWhileIndexing(t *testing.T) {
	ix := openIndex(t, testConfig(t))
	ctx := context.Background()
	g, _ := chat.NewIDGen(3)
	room, _ := g.Next()
	batch := func(n int, word string) []chat.Message {
		var ms []chat.Message
		for i := range n {
			id, at := g.Next()
			body := fmt.Sprintf("stable %s %d %s", word, i, strings.Repeat("pad ", i%7))
			ms = append(ms, chat.Message{ID: id, RoomID: room, UserID: 1, Username: "u", Body: body, CreatedAt: at})
		}
		return ms
	}
	first := batch(300, "old")
	if err := ix.IndexMessages(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := ix.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[chat.ID]int{}
	q := chat.SearchQuery{Text: "stable", RoomIDs: []chat.ID{room}, Limit: 100}
	for page := 0; page < 10; page++ {
		res, err := ix.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range res.Hits {
			seen[h.Message.ID]++
		}
		if page == 0 {
			// New matching messages arrive while the client pages.
			if err := ix.IndexMessages(ctx, batch(200, "new")); err != nil {
				t.Fatal(err)
			}
			if err := ix.refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if res.NextCursor == "" {
			break
		}
		q.Cursor = res.NextCursor
	}
	for _, m := range first {
		if seen[m.ID] != 1 {
			t.Fatalf("message %v seen %d times while paging", m.ID, seen[m.ID])
		}
	}
	if len(seen) != len(first) {
		t.Fatalf("listing held %d messages, want the %d indexed before it began", len(seen), len(first))
	}
}

// TestSearchTotalRelation checks that search asks the server to count up
// to chat.MaxSearchTotal only, and passes on whether the count is exact.
func TestSearchTotalRelation(t *testing.T) {
	var reqBody []byte
	answer := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"hits":{"total":` + answer + `,"hits":[]}}`))
	}))
	defer srv.Close()
	ix, err := Open(context.Background(), Config{Addresses: []string{srv.URL}, Flavor: FlavorOpenSearch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for _, tc := range []struct {
		answer   string
		total    int64
		relation string
	}{
		{`{"value":10000,"relation":"gte"}`, chat.MaxSearchTotal, chat.TotalGte},
		{`{"value":10000,"relation":"eq"}`, chat.MaxSearchTotal, chat.TotalEq},
		{`{"value":42,"relation":"eq"}`, 42, chat.TotalEq},
		{`{"value":7}`, 7, chat.TotalEq},
		// A server that counted past the cap anyway is capped here.
		{`{"value":123456,"relation":"eq"}`, chat.MaxSearchTotal, chat.TotalGte},
	} {
		answer = tc.answer
		res, err := ix.Search(context.Background(), chat.SearchQuery{Text: "x", RoomIDs: []chat.ID{1}, Limit: 10})
		if err != nil {
			t.Fatalf("answer %s: %v", tc.answer, err)
		}
		if res.Total != tc.total || res.TotalRelation != tc.relation {
			t.Errorf("answer %s: total %d %q, want %d %q", tc.answer, res.Total, res.TotalRelation, tc.total, tc.relation)
		}
		var sent struct {
			TrackTotalHits json.RawMessage `json:"track_total_hits"`
		}
		if err := json.Unmarshal(reqBody, &sent); err != nil {
			t.Fatalf("request body %s: %v", reqBody, err)
		}
		if got := string(sent.TrackTotalHits); got != "10000" {
			t.Errorf("track_total_hits %s, want 10000", got)
		}
	}
	res, err := ix.Search(context.Background(), chat.SearchQuery{Text: "x", Limit: 10})
	if err != nil || res.Total != 0 || res.TotalRelation != chat.TotalEq {
		t.Fatalf("Search without rooms: total %d %q, %v", res.Total, res.TotalRelation, err)
	}
}
