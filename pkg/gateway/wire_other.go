//go:build !unix

package gateway

import "net"

// rawSocket is unix only; elsewhere every frame goes through the flusher
// and the reader waits in the library.
type rawSocket struct{}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (*rawSocket) tryWrite([]byte) (int, error) { return 0, nil }

func (*rawSocket) waitReadable() {}
