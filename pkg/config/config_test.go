package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd"
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
