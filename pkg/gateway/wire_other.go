//go:build !unix

package gateway

import "net"

// Elsewhere every frame goes through the flusher.
func newDirectWriter(net.Conn) directWriter { return nil }

// waitReadable returns at once here; the reader waits in the library.
func (w *wire) waitReadable() {}
