package elastic

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chattest"
)

// TestTLS checks that https:// addresses use the configured CA and client
// certificate. The server here only records who reached it over TLS; the
// index itself is tested against a real server (CHATD_TEST_ELASTIC_URL).
func TestTLS(t *testing.T) {
	certs := chattest.NewCerts(t)
	var verified atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			verified.Add(1)
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		http.Error(w, `{"error":"test server"}`, http.StatusTeapot)
	}))
	srv.TLS = certs.MutualTLS
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)

	migrate := func(c *tls.Config) error {
		ix, err := Open(context.Background(), Config{Addresses: []string{srv.URL}, Index: "chatd-tls-test", TLS: c}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ix.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return ix.Migrate(ctx)
	}
	// The test server answers every request with an error, so Migrate
	// fails either way; what differs is whether a request got through.
	_ = migrate(certs.ClientPairTLS)
	if verified.Load() == 0 {
		t.Fatal("no request over mutual TLS with the configured CA and client certificate")
	}
	for name, c := range map[string]*tls.Config{
		"no client certificate": certs.ClientTLS,
		"untrusted client":      certs.ClientOtherTLS,
		"no private CA":         nil,
	} {
		before := verified.Load()
		if err := migrate(c); err == nil {
			t.Errorf("%s: Migrate succeeded", name)
		}
		if verified.Load() != before {
			t.Errorf("%s: a request got through", name)
		}
	}
}
