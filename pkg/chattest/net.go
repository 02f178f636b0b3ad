package chattest

import (
	"net"
	"testing"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago, for
// a test that must name a listen address before the server starts (a
// setting, a cluster route).
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
