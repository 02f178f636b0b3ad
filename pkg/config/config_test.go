package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/pkg/chattest"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "chatd.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The documented file must state exactly the defaults in code, key for key.
func TestDocumentedDefaultsMatchCode(t *testing.T) {
	p := writeFile(t, string(chatd.DefaultConfig))
	got, err := Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("chatd.toml differs from Default():\n got %+v\nwant %+v", got, want)
	}
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(chatd.DefaultConfig), leaf+" =") {
			t.Errorf("key %s is not documented in chatd.toml", k)
		}
	}
}

func TestPrecedence(t *testing.T) {
	p := writeFile(t, "[http]\naddr = \"127.0.0.1:1111\"\n[limits]\nsend_rate = 5\n")
	env := []string{"CHATD_HTTP_ADDR=127.0.0.1:2222", "CHATD_ROLES=gateway, user", "CHATD_GATEWAY_PING_INTERVAL=5s", "CHATD_TEST_SOMETHING=ignored", "PATH=/bin"}
	cfg, err := Load(p, env, map[string]string{"http.addr": "127.0.0.1:3333"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:3333" {
		t.Errorf("flag did not win: %q", cfg.HTTP.Addr)
	}
	if cfg.Limits.SendRate != 5 {
		t.Errorf("file value lost: %d", cfg.Limits.SendRate)
	}
	if !reflect.DeepEqual(cfg.Roles, []string{"gateway", "user"}) {
		t.Errorf("env list: %q", cfg.Roles)
	}
	if cfg.Gateway.PingInterval != 5*time.Second {
		t.Errorf("env duration: %v", cfg.Gateway.PingInterval)
	}
	cfg, err = Load(p, env, nil)
	if err != nil || cfg.HTTP.Addr != "127.0.0.1:2222" {
		t.Errorf("env did not override file: %q %v", cfg.HTTP.Addr, err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		sets       map[string]string
		want       string
	}{
		{"unknown file key", "[http]\nadress = \":1\"\n", nil, nil, "http.adress"},
		{"unknown section", "[nope]\nx = 1\n", nil, nil, "nope.x"},
		{"bad type", "[gateway]\nsend_queue = \"lots\"\n", nil, nil, "send_queue"},
		{"bad duration", "[gateway]\nping_interval = \"soon\"\n", nil, nil, "ping_interval"},
		{"bad role", "roles = [\"gateway\", \"chef\"]\n", nil, nil, "in roles"},
		{"negative", "", []string{"CHATD_GATEWAY_SEND_QUEUE=-1"}, nil, "gateway.send_queue"},
		{"bad backend", "[store]\nbackend = \"mongo\"\n", nil, nil, "store.backend"},
		{"kafka without brokers", "[eventlog]\nbackend = \"kafka\"\n", nil, nil, "kafka.brokers"},
		{"unknown flag key", "", nil, map[string]string{"http.adr": "x"}, "http.adr"},
		{"bad addr", "", nil, map[string]string{"http.addr": "nonsense"}, "http.addr"},
		{"bad toml", "[http\n", nil, nil, "chatd.toml"},
		{"node id", "node_id = 5000\n", nil, nil, "node_id"},
		{"nice too high", "[store]\nbackground_nice = 20\n", nil, nil, "store.background_nice"},
		{"nice negative", "", nil, map[string]string{"store.background_nice": "-5"}, "store.background_nice"},
		{"shed_after zero", "[gateway]\nshed_after = \"0s\"\n", nil, nil, "gateway.shed_after"},
		{"tls files while off", "[kafka.tls]\nca_file = \"/ca.pem\"\n", nil, nil, "kafka.tls"},
		{"tls cert without key", "", nil, map[string]string{"scylla.tls.enabled": "true", "scylla.tls.cert_file": "/c.pem"}, "scylla.tls"},
		{"grpc tls serving without cert", "", nil, map[string]string{"grpc.addr": ":9090", "grpc.tls.enabled": "true"}, "grpc.tls.cert_file"},
		{"unknown sasl", "[kafka.sasl]\nmechanism = \"gssapi\"\nusername = \"u\"\n", nil, nil, "kafka.sasl.mechanism"},
		{"sasl without user", "", []string{"CHATD_KAFKA_SASL_MECHANISM=scram-sha-512"}, nil, "kafka.sasl.username"},
		{"sasl user without mechanism", "", nil, map[string]string{"kafka.sasl.password": "p"}, "kafka.sasl.mechanism"},
		{"scylla password alone", "", nil, map[string]string{"scylla.password": "p"}, "scylla.username"},
		{"creds for embedded nats", "", nil, map[string]string{"nats.creds_file": "/u.creds"}, "nats.creds_file"},
		{"tls for embedded nats", "", nil, map[string]string{"nats.tls.enabled": "true"}, "nats.tls"},
		{"tls enabled not a bool", "", nil, map[string]string{"nats.tls.enabled": "maybe"}, "enabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeFile(t, c.file), c.env, c.sets)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name %q", err, c.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml"), nil, nil); err == nil {
		t.Fatal("missing config file accepted")
	}
}

func TestTLSFiles(t *testing.T) {
	certs := chattest.NewCerts(t)
	off, err := TLS{}.Client()
	if off != nil || err != nil {
		t.Fatalf("TLS off: %v %v, want nil", off, err)
	}
	c, err := TLS{Enabled: true, CAFile: certs.CA, CertFile: certs.Cert, KeyFile: certs.Key, ServerName: "chat.internal"}.Client()
	if err != nil {
		t.Fatal(err)
	}
	if c.RootCAs == nil || c.ClientCAs != nil || len(c.Certificates) != 1 || c.ServerName != "chat.internal" || c.MinVersion < tls.VersionTLS12 {
		t.Fatalf("client config %+v", c)
	}
	if c, err := (TLS{Enabled: true}).Client(); err != nil || c.RootCAs != nil {
		t.Fatalf("no ca_file should mean the system roots: %+v %v", c, err)
	}
	s, err := TLS{Enabled: true, CAFile: certs.CA, CertFile: certs.Cert, KeyFile: certs.Key}.Server()
	if err != nil {
		t.Fatal(err)
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Fatalf("server config with ca_file must require client certificates: %+v", s)
	}
	s, err = TLS{Enabled: true, CertFile: certs.Cert, KeyFile: certs.Key}.Server()
	if err != nil || s.ClientAuth != tls.NoClientCert {
		t.Fatalf("server config without ca_file: %+v %v", s, err)
	}

	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]TLS{
		"missing ca":         {Enabled: true, CAFile: filepath.Join(t.TempDir(), "none.pem")},
		"ca not pem":         {Enabled: true, CAFile: notPEM},
		"key of another":     {Enabled: true, CertFile: certs.Cert, KeyFile: certs.OtherKey},
		"missing cert":       {Enabled: true, CertFile: notPEM + ".x", KeyFile: certs.Key},
		"server without key": {Enabled: true, CAFile: certs.CA},
	} {
		if _, err := bad.Client(); err == nil && name != "server without key" {
			t.Errorf("%s: Client accepted it", name)
		}
		if _, err := bad.Server(); err == nil {
			t.Errorf("%s: Server accepted it", name)
		}
	}
}
