package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/chatd/chatd/pkg/chattest"
)

// tlsServer runs a NATS server that takes only TLS connections with a user
// and password, as a secured production cluster would.
func tlsServer(t *testing.T, certs *chattest.Certs) (host string, port int) {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		TLS: true, TLSConfig: certs.ServerTLS, TLSTimeout: 2,
		Username: "chatd", Password: "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return "127.0.0.1", s.Addr().(*net.TCPAddr).Port
}

func TestTLSAndPassword(t *testing.T) {
	certs := chattest.NewCerts(t)
	host, port := tlsServer(t, certs)
	try := func(url string, cfg ConnectConfig) error {
		cfg.URLs, cfg.Name = []string{url}, "t"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		nc, err := Connect(ctx, cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			defer nc.Close()
			if !nc.TLSRequired() {
				return fmt.Errorf("connected without TLS")
			}
			return nc.Flush()
		}
		return err
	}
	good := fmt.Sprintf("nats://chatd:s3cret@%s:%d", host, port)
	if err := try(good, ConnectConfig{TLS: certs.ClientTLS}); err != nil {
		t.Fatalf("TLS with the right CA and password: %v", err)
	}
	other := chattest.NewCerts(t)
	for name, c := range map[string]struct {
		url string
		cfg ConnectConfig
	}{
		"untrusted server": {good, ConnectConfig{TLS: other.ClientTLS}},
		"wrong password":   {fmt.Sprintf("nats://chatd:wrong@%s:%d", host, port), ConnectConfig{TLS: certs.ClientTLS}},
	} {
		err := try(c.url, c.cfg)
		if err == nil {
			t.Errorf("%s: connected", name)
			continue
		}
		if !strings.Contains(err.Error(), "last attempt") {
			t.Errorf("%s: %v does not say why the attempts failed", name, err)
		}
	}

	missing := filepath.Join(t.TempDir(), "none.creds")
	if err := try(good, ConnectConfig{TLS: certs.ClientTLS, CredsFile: missing}); err == nil || !strings.Contains(err.Error(), "nats.creds_file") {
		t.Errorf("missing creds file: %v", err)
	}
}
