package scylla

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/pkg/chattest"
)

// handshakes listens with TLS and reports, per connection, whether the TLS
// handshake succeeded; it speaks no CQL, so Open fails after it, which is
// all this needs: the test is that Open dials TLS and verifies the node.
func handshakes(t *testing.T, srv *tls.Config) (addr string, ok func() (good, bad int)) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	var mu sync.Mutex
	var good, bad int
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				err := c.(*tls.Conn).Handshake()
				mu.Lock()
				if err == nil {
					good++
				} else {
					bad++
				}
				mu.Unlock()
			}()
		}
	}()
	// The listener's side of a handshake may finish after Open has
	// returned; wait a moment for at least one, or for none.
	return lis.Addr().String(), func() (int, int) {
		deadline := time.Now().Add(2 * time.Second)
		for {
			mu.Lock()
			g, b := good, bad
			mu.Unlock()
			if g+b > 0 || time.Now().After(deadline) {
				return g, b
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestTLSDialsAndVerifies(t *testing.T) {
	certs := chattest.NewCerts(t)
	open := func(addr string, c *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := Open(ctx, Config{Hosts: []string{addr}, Timeout: 2 * time.Second, TLS: c}, nil)
		if err == nil {
			s.Close()
			return errors.New("opened a store on a server that speaks no CQL")
		}
		return nil
	}

	addr, counts := handshakes(t, certs.ServerTLS)
	if err := open(addr, certs.ClientTLS); err != nil {
		t.Fatal(err)
	}
	if good, _ := counts(); good == 0 {
		t.Fatal("no TLS handshake with the CA that signed the node's certificate")
	}

	// A node whose certificate the configured CA did not sign is refused
	// in the handshake: gocql verifies only when told to.
	other := chattest.NewCerts(t)
	addr, counts = handshakes(t, certs.ServerTLS)
	if err := open(addr, other.ClientTLS); err != nil {
		t.Fatal(err)
	}
	if good, bad := counts(); good != 0 || bad == 0 {
		t.Fatalf("handshakes with an untrusted node: %d succeeded, %d failed", good, bad)
	}

	// Mutual TLS: the node requires a client certificate.
	addr, counts = handshakes(t, certs.MutualTLS)
	if err := open(addr, certs.ClientPairTLS); err != nil {
		t.Fatal(err)
	}
	if good, _ := counts(); good == 0 {
		t.Fatal("no handshake presenting the client certificate")
	}

	// Without TLS configured, the dial is plaintext: no handshake (the
	// CQL bytes make the listener's handshake fail).
	addr, counts = handshakes(t, certs.ServerTLS)
	if err := open(addr, nil); err != nil {
		t.Fatal(err)
	}
	if good, bad := counts(); good != 0 || bad == 0 {
		t.Fatalf("without scylla TLS: %d handshakes succeeded, %d failed", good, bad)
	}
}
