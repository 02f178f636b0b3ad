package natsbus

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/chatd/chatd/pkg/chattest"
)

// runServer runs a NATS server with opts on a free loopback port until the
// test ends, and returns its host:port.
func runServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return s.Addr().String()
}

// try connects with cfg to url, giving up after 2 s, and makes one round
// trip.
func try(url string, cfg ConnectConfig) error {
	cfg.URLs, cfg.Name = []string{url}, "t"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nc, err := Connect(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

// The server takes only TLS connections with a user and password, as a
// secured production cluster would.
func TestTLSAndPassword(t *testing.T) {
	certs := chattest.NewCerts(t)
	addr := runServer(t, &server.Options{TLS: true, TLSConfig: certs.ServerTLS, TLSTimeout: 2, Username: "chatd", Password: "s3cret"})
	good := "nats://chatd:s3cret@" + addr
	if err := try(good, ConnectConfig{TLS: certs.ClientTLS}); err != nil {
		t.Fatalf("TLS with the right CA and password: %v", err)
	}
	other := chattest.NewCerts(t)
	for name, c := range map[string]struct {
		url string
		cfg ConnectConfig
	}{
		"untrusted server": {good, ConnectConfig{TLS: other.ClientTLS}},
		"wrong password":   {"nats://chatd:wrong@" + addr, ConnectConfig{TLS: certs.ClientTLS}},
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

// TestCredsFile connects with a user credentials file (JWT and NKey seed)
// to a server in operator mode, as NGS or a decentralised-auth cluster
// runs, and checks a user of another operator is refused.
func TestCredsFile(t *testing.T) {
	operator := func() (nkeys.KeyPair, *jwt.OperatorClaims) {
		okp, err := nkeys.CreateOperator()
		if err != nil {
			t.Fatal(err)
		}
		opk, _ := okp.PublicKey()
		oc := jwt.NewOperatorClaims(opk)
		oc.Name = "test"
		if _, err := oc.Encode(okp); err != nil {
			t.Fatal(err)
		}
		return okp, oc
	}
	// credsOf writes the credentials of a new user of a new account
	// signed by okp, and returns the account's public key and JWT.
	credsOf := func(okp nkeys.KeyPair) (path, apk, ajwt string) {
		akp, _ := nkeys.CreateAccount()
		apk, _ = akp.PublicKey()
		ajwt, err := jwt.NewAccountClaims(apk).Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		ukp, _ := nkeys.CreateUser()
		upk, _ := ukp.PublicKey()
		ujwt, err := jwt.NewUserClaims(upk).Encode(akp)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := ukp.Seed()
		creds, err := jwt.FormatUserConfig(ujwt, seed)
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(t.TempDir(), "user.creds")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			t.Fatal(err)
		}
		return path, apk, ajwt
	}
	okp, oc := operator()
	creds, apk, ajwt := credsOf(okp)
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apk, ajwt); err != nil {
		t.Fatal(err)
	}
	url := "nats://" + runServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver})
	if err := try(url, ConnectConfig{CredsFile: creds}); err != nil {
		t.Fatalf("with the account's user credentials: %v", err)
	}
	otherOp, _ := operator()
	stranger, _, _ := credsOf(otherOp)
	if err := try(url, ConnectConfig{CredsFile: stranger}); err == nil {
		t.Fatal("a user of another operator connected")
	}
}
