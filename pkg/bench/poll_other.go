//go:build !linux

package bench

import (
	"net/url"
	"time"
)

// Without epoll every connection is a net.Conn read by its own goroutine.

func dialLink(u *url.URL, path, token string, timeout time.Duration) (link, []byte, error) {
	return dialNet(u, path, token, timeout)
}

type poller struct{ w *worker }

func newPoller(w *worker) (*poller, error) { return &poller{w: w}, nil }

func (p *poller) add(c *rconn) { go p.w.readLoop(c, c.link.(*netLink)) }

func (p *poller) remove(*rconn) {}

func (p *poller) stop() {}
