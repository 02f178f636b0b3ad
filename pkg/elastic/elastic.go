// Package elastic implements chat.SearchIndex on Elasticsearch 8 or
// OpenSearch 2 with the official go-elasticsearch v8 client: bulk writes
// keyed by message ID, an explicit mapping, and history and search queries
// that always filter by room.
package elastic

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// Flavors of server.
const (
	FlavorElasticsearch = "elasticsearch"
	FlavorOpenSearch    = "opensearch"
)

// Config configures the index.
type Config struct {
	// Addresses are the node URLs, e.g. http://127.0.0.1:9200. Required.
	Addresses []string
	// Username and Password for HTTP basic auth, if set.
	Username string
	Password string
	// Index is the index name; default "chatd-messages".
	Index string
	// Flavor is "elasticsearch" (default) or "opensearch". The v8 client
	// refuses servers that do not say they are Elasticsearch, so for
	// OpenSearch the transport adds that response header.
	Flavor string
	// BulkMaxDocs and BulkMaxBytes bound one _bulk request; defaults 1000
	// documents and 5 MiB. Larger IndexMessages calls are split.
	BulkMaxDocs  int
	BulkMaxBytes int
	// FlushInterval bounds how long an indexed message takes to become
	// searchable: it is the index's refresh_interval (default 1s), set by
	// Migrate. IndexMessages itself writes at once, never holding messages
	// back: its caller, the log consumer, already hands over one batch per
	// poll (bounded by its size) and must know the batch is written before
	// it commits.
	FlushInterval time.Duration
	// Shards and Replicas are used when Migrate creates the index;
	// defaults 1 and the server's default.
	Shards   int
	Replicas int
	// Transport is the HTTP transport; nil: a clone of
	// http.DefaultTransport, with TLS.
	Transport http.RoundTripper
	// TLS, if set, is the TLS configuration of https:// addresses (a
	// private CA, a client certificate) when Transport is nil.
	TLS *tls.Config
}

func (c *Config) setDefaults() error {
	if len(c.Addresses) == 0 {
		return errors.New("in elasticsearch.addresses: at least one address is required")
	}
	if c.Index == "" {
		c.Index = "chatd-messages"
	}
	if c.Index != strings.ToLower(c.Index) || strings.ContainsAny(c.Index, ` "*\<|,>/?#:`) {
		return fmt.Errorf("in elasticsearch.index: %q is not a valid index name", c.Index)
	}
	switch c.Flavor {
	case "":
		c.Flavor = FlavorElasticsearch
	case FlavorElasticsearch, FlavorOpenSearch:
	default:
		return fmt.Errorf("in elasticsearch.flavor: %q must be %q or %q", c.Flavor, FlavorElasticsearch, FlavorOpenSearch)
	}
	if c.BulkMaxDocs <= 0 {
		c.BulkMaxDocs = 1000
	}
	if c.BulkMaxBytes <= 0 {
		c.BulkMaxBytes = 5 << 20
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Shards <= 0 {
		c.Shards = 1
	}
	return nil
}

// Index is a chat.SearchIndex on one Elasticsearch/OpenSearch index. It is
// safe for concurrent use.
type Index struct {
	cfg Config
	log *slog.Logger
	es  *elasticsearch.Client
	rt  http.RoundTripper
}

var _ chat.SearchIndex = (*Index)(nil)

// Open creates the client. It does not contact the server: see Migrate.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Index, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.TLS != nil {
			t.TLSClientConfig = cfg.TLS.Clone()
		}
		rt = t
	}
	if cfg.Flavor == FlavorOpenSearch {
		rt = openSearchTransport{rt}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.Addresses,
		Username:  cfg.Username,
		Password:  cfg.Password,
		Transport: rt,
		// 429 is what a busy cluster answers to bulk requests.
		RetryOnStatus: []int{429, 502, 503, 504},
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return &Index{cfg: cfg, log: log.With("index", cfg.Index), es: es, rt: rt}, nil
}

// Close releases idle connections.
func (ix *Index) Close() error {
	rt := ix.rt
	if o, ok := rt.(openSearchTransport); ok {
		rt = o.next
	}
	if t, ok := rt.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// openSearchTransport lets the v8 client talk to OpenSearch, which does not
// send the X-Elastic-Product header the client insists on
// (elastic/go-elasticsearch#515); it also undoes the v8 compatibility media
// type, which OpenSearch rejects, should ELASTIC_CLIENT_APIVERSIONING be set.
type openSearchTransport struct{ next http.RoundTripper }

func (t openSearchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.Header.Get("Accept"), "vnd.elasticsearch") {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", "application/json")
		if req.Header.Get("Content-Type") != "" {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	res, err := t.next.RoundTrip(req)
	if res != nil {
		res.Header.Set("X-Elastic-Product", "Elasticsearch")
	}
	return res, err
}

// The mapping is explicit and strict, so a field never gets a guessed type
// (the seed's dynamic mapping made room_id a text field and term filters
// on it missed).
//
// words holds chat.SearchWords(body) joined by spaces, indexed with a
// whitespace tokenizer: the query side uses the words of chat.ParseSearch,
// so matching is exactly the shared grammar's (and what chat.Highlight
// marks), rather than the standard analyzer's own idea of a word. body keeps
// the standard analyzer for operators' ad-hoc queries.
func (ix *Index) mapping() map[string]any {
	settings := map[string]any{
		"number_of_shards": ix.cfg.Shards,
		"refresh_interval": ix.refreshInterval(),
		"analysis": map[string]any{
			"tokenizer": map[string]any{
				"chat_words": map[string]any{"type": "whitespace", "max_token_length": chat.MaxBodyChars},
			},
			"analyzer": map[string]any{
				"chat_words": map[string]any{"type": "custom", "tokenizer": "chat_words"},
			},
		},
	}
	if ix.cfg.Replicas > 0 {
		settings["number_of_replicas"] = ix.cfg.Replicas
	}
	return map[string]any{
		"settings": settings,
		"mappings": properties(),
	}
}

func (ix *Index) refreshInterval() string {
	return strconv.FormatInt(ix.cfg.FlushInterval.Milliseconds(), 10) + "ms"
}

func properties() map[string]any {
	return map[string]any{
		"dynamic": "strict",
		"properties": map[string]any{
			"id":         map[string]any{"type": "keyword"},
			"id_n":       map[string]any{"type": "long"},
			"room_id":    map[string]any{"type": "keyword"},
			"user_id":    map[string]any{"type": "keyword"},
			"username":   map[string]any{"type": "keyword"},
			"body":       map[string]any{"type": "text", "analyzer": "standard"},
			"words":      map[string]any{"type": "text", "analyzer": "chat_words"},
			"created_at": map[string]any{"type": "date", "format": "strict_date_optional_time_nanos||strict_date_optional_time"},
			"created_ns": map[string]any{"type": "long"},
			"nonce":      map[string]any{"type": "keyword", "index": false, "doc_values": false},
			"edited_at":  map[string]any{"type": "date", "format": "strict_date_optional_time_nanos||strict_date_optional_time"},
		},
	}
}

// Migrate creates the index with its settings and mapping, or, if it
// exists, puts the mapping again so fields added by a newer chatd appear.
func (ix *Index) Migrate(ctx context.Context) error {
	res, err := esapi.IndicesExistsRequest{Index: []string{ix.cfg.Index}}.Do(ctx, ix.es)
	if err != nil {
		return fmt.Errorf("check index: %w", err)
	}
	drain(res)
	switch res.StatusCode {
	case http.StatusNotFound:
		body, _ := json.Marshal(ix.mapping())
		res, err := esapi.IndicesCreateRequest{Index: ix.cfg.Index, Body: bytes.NewReader(body)}.Do(ctx, ix.es)
		if err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		if err := responseError(res); err != nil && !strings.Contains(err.Error(), "resource_already_exists_exception") {
			return fmt.Errorf("create index: %w", err)
		}
		return nil
	case http.StatusOK:
		settings, _ := json.Marshal(map[string]any{"index": map[string]any{"refresh_interval": ix.refreshInterval()}})
		res, err := esapi.IndicesPutSettingsRequest{Index: []string{ix.cfg.Index}, Body: bytes.NewReader(settings)}.Do(ctx, ix.es)
		if err != nil {
			return fmt.Errorf("put settings: %w", err)
		}
		if err := responseError(res); err != nil {
			return fmt.Errorf("put settings: %w", err)
		}
		body, _ := json.Marshal(properties())
		res, err = esapi.IndicesPutMappingRequest{Index: []string{ix.cfg.Index}, Body: bytes.NewReader(body)}.Do(ctx, ix.es)
		if err != nil {
			return fmt.Errorf("put mapping: %w", err)
		}
		if err := responseError(res); err != nil {
			return fmt.Errorf("put mapping: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("check index: status %d", res.StatusCode)
	}
}

// doc is the stored form of a message.
type doc struct {
	ID        string  `json:"id"`
	IDN       int64   `json:"id_n"`
	RoomID    string  `json:"room_id"`
	UserID    string  `json:"user_id"`
	Username  string  `json:"username"`
	Body      string  `json:"body"`
	Words     string  `json:"words"`
	CreatedAt string  `json:"created_at"`
	CreatedNS int64   `json:"created_ns"`
	Nonce     string  `json:"nonce,omitempty"`
	EditedAt  *string `json:"edited_at,omitempty"`
}

func toDoc(m chat.Message) doc {
	d := doc{
		ID: m.ID.String(), IDN: int64(m.ID), RoomID: m.RoomID.String(), UserID: m.UserID.String(),
		Username: m.Username, Body: m.Body, Words: strings.Join(chat.SearchWords(m.Body), " "),
		CreatedAt: chat.FormatTime(m.CreatedAt), CreatedNS: unixNano(m.CreatedAt), Nonce: m.Nonce,
	}
	if m.EditedAt != nil {
		s := chat.FormatTime(*m.EditedAt)
		d.EditedAt = &s
	}
	return d
}

func (d doc) message() (chat.Message, error) {
	id, err1 := strconv.ParseInt(d.ID, 10, 64)
	room, err2 := strconv.ParseInt(d.RoomID, 10, 64)
	user, err3 := strconv.ParseInt(d.UserID, 10, 64)
	created, err4 := time.Parse(time.RFC3339Nano, d.CreatedAt)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return chat.Message{}, fmt.Errorf("decode document %s: %w", d.ID, err)
	}
	m := chat.Message{
		ID: chat.ID(id), RoomID: chat.ID(room), UserID: chat.ID(user), Username: d.Username,
		Body: d.Body, CreatedAt: created.UTC(), Nonce: d.Nonce,
	}
	if d.EditedAt != nil {
		e, err := time.Parse(time.RFC3339Nano, *d.EditedAt)
		if err != nil {
			return chat.Message{}, fmt.Errorf("decode document %s: %w", d.ID, err)
		}
		e = e.UTC()
		m.EditedAt = &e
	}
	return m, nil
}

// unixNano is t's Unix nanoseconds, clamped to int64 where UnixNano is
// undefined, so range filters stay exact for every real message time.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// IndexMessages writes msgs with _bulk, one create action per message with
// _id = message ID: a message already indexed is left as it is (the
// conflict answer counts as success), so redelivery from the log changes
// nothing, not even if a redelivered copy differed. Requests are split at
// BulkMaxDocs documents or BulkMaxBytes bytes. Any other failed item fails
// the call, so the log consumer retries the batch. No refresh is forced:
// documents become searchable at the index's refresh interval, which keeps
// indexing cheap.
func (ix *Index) IndexMessages(ctx context.Context, msgs []chat.Message) error {
	var (
		buf  bytes.Buffer
		docs int
	)
	flush := func() error {
		if docs == 0 {
			return nil
		}
		err := ix.bulk(ctx, buf.Bytes(), docs)
		buf.Reset()
		docs = 0
		return err
	}
	for _, m := range msgs {
		action, _ := json.Marshal(map[string]any{"create": map[string]any{"_index": ix.cfg.Index, "_id": m.ID.String()}})
		src, err := json.Marshal(toDoc(m))
		if err != nil {
			return fmt.Errorf("encode message %s: %w", m.ID, err)
		}
		n := len(action) + len(src) + 2
		if docs > 0 && (docs >= ix.cfg.BulkMaxDocs || buf.Len()+n > ix.cfg.BulkMaxBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		buf.Write(action)
		buf.WriteByte('\n')
		buf.Write(src)
		buf.WriteByte('\n')
		docs++
	}
	return flush()
}

type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		ID     string          `json:"_id"`
		Status int             `json:"status"`
		Error  json.RawMessage `json:"error"`
	} `json:"items"`
}

func (ix *Index) bulk(ctx context.Context, body []byte, docs int) error {
	res, err := esapi.BulkRequest{Body: bytes.NewReader(body)}.Do(ctx, ix.es)
	if err != nil {
		return fmt.Errorf("bulk index: %w", err)
	}
	defer drain(res)
	if res.IsError() {
		return fmt.Errorf("bulk index: %w", responseError(res))
	}
	var br bulkResponse
	if err := json.NewDecoder(res.Body).Decode(&br); err != nil {
		return fmt.Errorf("bulk index: decode response: %w", err)
	}
	if !br.Errors {
		return nil
	}
	failed := 0
	var first string
	for _, item := range br.Items {
		for _, r := range item {
			if r.Status == http.StatusConflict {
				continue // already indexed
			}
			if r.Status >= 300 || len(r.Error) > 0 && string(r.Error) != "null" {
				if failed == 0 {
					first = fmt.Sprintf("document %s: status %d: %s", r.ID, r.Status, r.Error)
				}
				failed++
			}
		}
	}
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("bulk index: %d of %d documents failed, first %s", failed, docs, first)
}

var errUnavailable = chat.Errorf(chat.EUNAVAILABLE, "search unavailable")

// searchResponse is the part of a _search answer that is read.
type searchResponse struct {
	Hits struct {
		Total struct {
			Value    int64  `json:"value"`
			Relation string `json:"relation"` // "eq" or "gte"
		} `json:"total"`
		Hits []struct {
			Source doc           `json:"_source"`
			Sort   []json.Number `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

func (ix *Index) search(ctx context.Context, body map[string]any) (*searchResponse, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	res, err := esapi.SearchRequest{Index: []string{ix.cfg.Index}, Body: bytes.NewReader(b)}.Do(ctx, ix.es)
	if err != nil {
		// The cluster could not be reached: a client may retry.
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	}
	defer drain(res)
	if res.IsError() {
		err := responseError(res)
		switch res.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		return nil, err
	}
	var sr searchResponse
	dec := json.NewDecoder(res.Body)
	// Sort values are 64-bit IDs: as float64 they would lose precision.
	dec.UseNumber()
	if err := dec.Decode(&sr); err != nil {
		return nil, fmt.Errorf("decode search response: %w", err)
	}
	return &sr, nil
}

// limit clamps a requested page size to 1..MaxPageLimit, 50 when unset.
func limit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > chat.MaxPageLimit:
		return chat.MaxPageLimit
	}
	return n
}

func timeRange(from, to time.Time) map[string]any {
	if from.IsZero() && to.IsZero() {
		return nil
	}
	r := map[string]any{}
	if !from.IsZero() {
		r["gte"] = unixNano(from)
	}
	if !to.IsZero() {
		r["lt"] = unixNano(to)
	}
	return map[string]any{"range": map[string]any{"created_ns": r}}
}

// Cursors are the search_after values of the last hit, base64url-encoded
// JSON with a kind tag, so a history cursor is refused by search and vice
// versa and clients cannot depend on the form.
type cursor struct {
	Kind  string        `json:"k"`
	After []json.Number `json:"a"`
}

func encodeCursor(kind string, after []json.Number) string {
	b, _ := json.Marshal(cursor{kind, after})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(kind, s string, n int) ([]json.Number, error) {
	bad := chat.Errorf(chat.EINVALID, "invalid cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var c cursor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil || c.Kind != kind || len(c.After) != n {
		return nil, bad
	}
	for _, v := range c.After {
		if _, err := v.Float64(); err != nil {
			return nil, bad
		}
	}
	return c.After, nil
}

// History returns the room's messages in [From, To), oldest first, paged
// by search_after on the message ID.
func (ix *Index) History(ctx context.Context, q chat.HistoryQuery) (chat.HistoryPage, error) {
	n := limit(q.Limit)
	filter := []any{map[string]any{"term": map[string]any{"room_id": q.RoomID.String()}}}
	if r := timeRange(q.From, q.To); r != nil {
		filter = append(filter, r)
	}
	body := map[string]any{
		"size":             n + 1, // one more tells whether there is a next page
		"query":            map[string]any{"bool": map[string]any{"filter": filter}},
		"sort":             []any{map[string]any{"id_n": "asc"}},
		"track_total_hits": false,
	}
	if q.Cursor != "" {
		after, err := decodeCursor("h", q.Cursor, 1)
		if err != nil {
			return chat.HistoryPage{}, err
		}
		body["search_after"] = after
	}
	sr, err := ix.search(ctx, body)
	if err != nil {
		return chat.HistoryPage{}, fmt.Errorf("history: %w", err)
	}
	page := chat.HistoryPage{Messages: make([]chat.Message, 0, min(n, len(sr.Hits.Hits)))}
	for i, h := range sr.Hits.Hits {
		if i == n {
			page.NextCursor = encodeCursor("h", sr.Hits.Hits[n-1].Sort)
			break
		}
		m, err := h.Source.message()
		if err != nil {
			return chat.HistoryPage{}, fmt.Errorf("history: %w", err)
		}
		page.Messages = append(page.Messages, m)
	}
	return page, nil
}

// Search runs a full-text search in q.RoomIDs, best match first (ties:
// newest first), with every term of the query required.
func (ix *Index) Search(ctx context.Context, q chat.SearchQuery) (chat.SearchResult, error) {
	terms, err := chat.ParseSearch(q.Text)
	if err != nil {
		return chat.SearchResult{}, err
	}
	if len(q.RoomIDs) == 0 {
		return chat.SearchResult{Hits: []chat.SearchHit{}, TotalRelation: chat.TotalEq}, nil
	}
	n := limit(q.Limit)
	must := make([]any, 0, len(terms))
	for _, t := range terms {
		must = append(must, termQuery(t))
	}
	rooms := make([]string, len(q.RoomIDs))
	for i, id := range q.RoomIDs {
		rooms[i] = id.String()
	}
	filter := []any{map[string]any{"terms": map[string]any{"room_id": rooms}}}
	if q.UserID != 0 {
		filter = append(filter, map[string]any{"term": map[string]any{"user_id": q.UserID.String()}})
	}
	if r := timeRange(q.From, q.To); r != nil {
		filter = append(filter, r)
	}
	// Pages are offsets into a snapshot: only messages with an ID below
	// the bound fixed at the first page count. search_after on the score
	// is not stable here: indexing between two pages re-scores every hit
	// (the distributed test saw listings restart and repeat 1,000 hits).
	offset, bound := int64(0), int64(chat.MinIDAt(time.Now().Add(time.Millisecond)))
	if q.Cursor != "" {
		after, err := decodeCursor("s", q.Cursor, 2)
		if err != nil {
			return chat.SearchResult{}, err
		}
		o, err1 := after[0].Int64()
		b, err2 := after[1].Int64()
		if err1 != nil || err2 != nil || o < 0 || o >= chat.MaxSearchTotal || b <= 0 {
			return chat.SearchResult{}, chat.Errorf(chat.EINVALID, "invalid cursor")
		}
		offset, bound = o, b
	}
	filter = append(filter, map[string]any{"range": map[string]any{"id_n": map[string]any{"lt": bound}}})
	// Counting stops at the cap ("relation":"gte" beyond), as it does by
	// default; the SQLite backend counts as far.
	body := map[string]any{
		"from":             offset,
		"size":             min(int64(n+1), chat.MaxSearchTotal-offset),
		"query":            map[string]any{"bool": map[string]any{"must": must, "filter": filter}},
		"sort":             []any{map[string]any{"_score": "desc"}, map[string]any{"id_n": "desc"}},
		"track_total_hits": chat.MaxSearchTotal,
	}
	sr, err := ix.search(ctx, body)
	if err != nil {
		return chat.SearchResult{}, fmt.Errorf("search: %w", err)
	}
	res := chat.SearchResult{Total: sr.Hits.Total.Value, TotalRelation: chat.TotalEq, Hits: make([]chat.SearchHit, 0, min(n, len(sr.Hits.Hits)))}
	if sr.Hits.Total.Relation == chat.TotalGte || res.Total > chat.MaxSearchTotal {
		res.Total, res.TotalRelation = min(res.Total, chat.MaxSearchTotal), chat.TotalGte
	}
	for i, h := range sr.Hits.Hits {
		if i == n {
			if next := offset + int64(n); next < chat.MaxSearchTotal {
				res.NextCursor = encodeCursor("s", []json.Number{json.Number(strconv.FormatInt(next, 10)), json.Number(strconv.FormatInt(bound, 10))})
			}
			break
		}
		m, err := h.Source.message()
		if err != nil {
			return chat.SearchResult{}, fmt.Errorf("search: %w", err)
		}
		res.Hits = append(res.Hits, chat.SearchHit{Message: m, Highlight: chat.Highlight(m.Body, terms)})
	}
	return res, nil
}

// termQuery translates one term of the shared grammar into a query on the
// words field.
func termQuery(t chat.SearchTerm) map[string]any {
	text := strings.Join(t.Words, " ")
	switch {
	case t.Prefix && len(t.Words) == 1:
		return map[string]any{"prefix": map[string]any{"words": map[string]any{"value": text}}}
	case t.Prefix:
		// max_expansions bounds how many words the last one may expand to;
		// well above what a chat prefix meets in practice.
		return map[string]any{"match_phrase_prefix": map[string]any{"words": map[string]any{"query": text, "max_expansions": 1000}}}
	case t.Phrase || len(t.Words) > 1:
		return map[string]any{"match_phrase": map[string]any{"words": text}}
	default:
		return map[string]any{"match": map[string]any{"words": map[string]any{"query": text, "operator": "and"}}}
	}
}

// responseError turns an error answer into an error carrying its status
// and the server's error type and reason (never shown to clients).
func responseError(res *esapi.Response) error {
	if !res.IsError() {
		drain(res)
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	drain(res)
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Type != "" {
		return fmt.Errorf("status %d: %s: %s", res.StatusCode, e.Error.Type, e.Error.Reason)
	}
	return fmt.Errorf("status %d: %s", res.StatusCode, bytes.TrimSpace(b))
}

// refresh makes everything indexed so far searchable. Only tests need it:
// production relies on the index's refresh interval.
func (ix *Index) refresh(ctx context.Context) error {
	res, err := esapi.IndicesRefreshRequest{Index: []string{ix.cfg.Index}}.Do(ctx, ix.es)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	return responseError(res)
}

// drain reads and closes the body so the connection is reused.
func drain(res *esapi.Response) {
	if res != nil && res.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
	}
}
