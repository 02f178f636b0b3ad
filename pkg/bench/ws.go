package bench

import (
	"bufio"
	crand "crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
)

// The bench speaks the WebSocket protocol (RFC 6455) itself rather than
// through a library: the receive path of 10,000 connections must cost the
// tool far less CPU than it costs the server, so frames are parsed straight
// out of one large read buffer, without a reader object, a goroutine or an
// allocation per frame. Only what a client needs is here: the upgrade,
// unmasked server frames (text, continuation, ping, pong, close) and masked
// client frames.

const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA

	maxFrame = 1 << 22 // larger server frames are a protocol error for the bench
)

var errFrame = errors.New("websocket: malformed frame")

// wsHandshake sends the upgrade request for path on rw and reads the answer.
// It returns the bytes that came after the 101 response (frames the server
// sent at once).
func wsHandshake(rw io.ReadWriter, host, path, token string) ([]byte, error) {
	var k [16]byte
	_, _ = crand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(rw, req+"\r\n"); err != nil {
		return nil, fmt.Errorf("dial: %v", err)
	}
	br := bufio.NewReaderSize(rw, 4096)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			return nil, fmt.Errorf("dial: 429 (too many connections for one user?): %s", strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("dial: %s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	if res.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return nil, errors.New("dial: bad Sec-WebSocket-Accept")
	}
	if ext := res.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return nil, fmt.Errorf("dial: unrequested extension %q", ext)
	}
	rest, _ := br.Peek(br.Buffered())
	return append([]byte(nil), rest...), nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// nextFrame parses the first frame in b. n is the bytes it took, 0 when b
// holds only part of a frame. A masked frame (servers must not mask) is
// unmasked in place.
func nextFrame(b []byte) (fin bool, op byte, payload []byte, n int, err error) {
	if len(b) < 2 {
		return false, 0, nil, 0, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return false, 0, nil, 0, errFrame // no extension was negotiated
	}
	fin, op = b0&0x80 != 0, b0&0x0F
	h := 2
	l := uint64(b1 & 0x7F)
	switch l {
	case 126:
		if len(b) < 4 {
			return false, 0, nil, 0, nil
		}
		l, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return false, 0, nil, 0, nil
		}
		l, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if l > maxFrame {
		return false, 0, nil, 0, errFrame
	}
	masked := b1&0x80 != 0
	if masked {
		h += 4
	}
	if len(b) < h+int(l) {
		return false, 0, nil, 0, nil
	}
	payload = b[h : h+int(l)]
	if masked {
		k := b[h-4 : h]
		for i := range payload {
			payload[i] ^= k[i&3]
		}
	}
	return fin, op, payload, h + int(l), nil
}

// appendHeader appends a final frame's header for a payload of l bytes;
// mask is 0x80 for a masked (client) frame, 0 for a server's.
func appendHeader(dst []byte, op byte, l int, mask byte) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case l < 126:
		return append(dst, mask|byte(l))
	case l <= 0xFFFF:
		return append(dst, mask|126, byte(l>>8), byte(l))
	default:
		dst = append(dst, mask|127)
		return binary.BigEndian.AppendUint64(dst, uint64(l))
	}
}

// appendClientFrame appends one whole client frame (FIN set, masked with a
// fresh key as RFC 6455 requires of clients).
func appendClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = appendHeader(dst, op, len(payload), 0x80)
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], rand.Uint32())
	dst = append(dst, k[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range dst[start:] {
		dst[start+i] ^= k[i&3]
	}
	return dst
}

// appendServerFrame appends an unmasked frame, as a server sends it (the
// self-test sender).
func appendServerFrame(dst []byte, op byte, payload []byte) []byte {
	return append(appendHeader(dst, op, len(payload), 0), payload...)
}

// frameConn is the framing state of one connection's receive side. feed
// takes the bytes as they come off the socket, in any split, and calls msg
// for every whole text or binary message and ctl for every control frame.
type frameConn struct {
	pending []byte // a frame cut off by the end of the last read
	frag    []byte // a fragmented message so far
	fragOp  byte
	inFrag  bool
}

// feed consumes data. It returns an error on a protocol violation; a close
// frame is passed to ctl like the others.
func (f *frameConn) feed(data []byte, msg func(op byte, p []byte), ctl func(op byte, p []byte)) error {
	if len(f.pending) > 0 {
		f.pending = append(f.pending, data...)
		data = f.pending
	}
	for len(data) > 0 {
		fin, op, p, n, err := nextFrame(data)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		data = data[n:]
		switch op {
		case opText, opBin:
			if f.inFrag {
				return errFrame
			}
			if fin {
				msg(op, p)
			} else {
				f.frag, f.fragOp, f.inFrag = append(f.frag[:0], p...), op, true
			}
		case opCont:
			if !f.inFrag {
				return errFrame
			}
			f.frag = append(f.frag, p...)
			if len(f.frag) > maxFrame {
				return errFrame
			}
			if fin {
				f.inFrag = false
				msg(f.fragOp, f.frag)
			}
		case opClose, opPing, opPong:
			if !fin || len(p) > 125 {
				return errFrame
			}
			ctl(op, p)
		default:
			return errFrame
		}
	}
	// Keep the unparsed tail (copy handles data overlapping f.pending).
	switch {
	case len(data) == 0:
		f.pending = f.pending[:0]
		if cap(f.pending) > 64<<10 {
			f.pending = nil // do not pin a large buffer on an idle connection
		}
	case cap(f.pending) >= len(data):
		f.pending = f.pending[:copy(f.pending[:len(data)], data)]
	default:
		f.pending = append(make([]byte, 0, max(len(data), 512)), data...)
	}
	return nil
}
