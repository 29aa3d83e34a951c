package responder

import (
	"bytes"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The health endpoint speaks just enough HTTP/1.1 itself instead of going
// through net/http: one read of the request head, one write of a fixed
// answer, close. net/http spends socket operations a probe never needs
// (keep-alive options on accept, a background read posted before the handler
// runs and canceled after it) and under Wine each one is a round trip through
// the wineserver, all of it inside the peer's first_byte.
const (
	// maxHeadBytes bounds the request line and headers; beyond it the answer is 431.
	maxHeadBytes = 8 << 10
	// exchangeTimeout bounds a whole exchange: a client that has not sent its
	// head by then is dropped.
	exchangeTimeout = 2 * time.Second
	// drainTimeout bounds the wait for a client to stop sending after an
	// answer that did not read all it sent.
	drainTimeout = 500 * time.Millisecond
	// maxExchanges bounds the connections answered at once; one over it is
	// closed unanswered, so a flood costs an accept and a close each.
	maxExchanges = 256
	// refusedLogEvery spaces the log lines about refused connections.
	refusedLogEvery = time.Minute
)

// health answers the health endpoint.
type health struct {
	body    []byte // the GET answer's body
	timeout time.Duration
	slots   chan struct{}
	wg      sync.WaitGroup
	bufs    sync.Pool
	log     *slog.Logger
	// refused counts the connections closed unanswered since loggedAt;
	// only the accept loop touches them.
	refused  int
	loggedAt time.Time
}

func newHealth(body []byte, log *slog.Logger) *health {
	return &health{body: body, log: log, timeout: exchangeTimeout, slots: make(chan struct{}, maxExchanges),
		bufs: sync.Pool{New: func() any { return new([maxHeadBytes]byte) }}}
}

// serve answers every connection l accepts until l is closed, then waits for
// the exchanges in progress (each ends within its timeout).
func (h *health) serve(l net.Listener) {
	defer h.wg.Wait()
	sl := steadyListener{l}
	for {
		c, err := sl.Accept()
		if err != nil {
			return // closed
		}
		select {
		case h.slots <- struct{}{}:
		default:
			c.Close()
			h.noteRefused()
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.answer(c)
			<-h.slots
		}()
	}
}

// noteRefused counts a connection closed unanswered and logs the count at
// most once per refusedLogEvery.
func (h *health) noteRefused() {
	h.refused++
	if now := time.Now(); now.Sub(h.loggedAt) >= refusedLogEvery {
		h.log.Warn("health endpoint at its limit: closing new connections unanswered", "limit", maxExchanges, "refused", h.refused)
		h.refused, h.loggedAt = 0, now
	}
}

// answer reads one request head from c, writes the answer and closes c.
func (h *health) answer(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(h.timeout))
	buf := h.bufs.Get().(*[maxHeadBytes]byte)
	defer h.bufs.Put(buf)
	n, end := 0, -1
	for end < 0 {
		if n == len(buf) {
			_, _ = c.Write(h.reply(http431, false))
			drain(c, buf[:])
			return
		}
		m, err := c.Read(buf[n:])
		n += m
		end = headEnd(buf[:n])
		if end < 0 && err != nil {
			return // closed, reset or too slow before a whole head: no one to answer
		}
	}
	st, head := route(buf[:end])
	_, _ = c.Write(h.reply(st, head))
	if end < n || hasBody(buf[:end]) {
		drain(c, buf[:])
	}
}

// drain half-closes c and reads what the client still sends, for a while:
// closing with unread bytes sends a reset, which can destroy the answer
// before the client has read it (net/http does the same).
func drain(c net.Conn, buf []byte) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(drainTimeout))
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// status is an answer the health endpoint gives.
type status int

const (
	http200 status = iota
	http400        // malformed request
	http404        // not the health path
	http405        // not GET or HEAD
	http431        // head over maxHeadBytes
	http505        // not HTTP/1.x
)

var statusLines = [...]string{
	http200: "200 OK",
	http400: "400 Bad Request",
	http404: "404 Not Found",
	http405: "405 Method Not Allowed",
	http431: "431 Request Header Fields Too Large",
	http505: "505 HTTP Version Not Supported",
}

// reply renders the answer; head omits the body (HEAD requests).
func (h *health) reply(st status, head bool) []byte {
	body := h.body
	if st != http200 {
		body = []byte(statusLines[st][4:] + "\n")
	}
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = append(b, statusLines[st]...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n"...)
	if st == http405 {
		b = append(b, "Allow: GET, HEAD\r\n"...)
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 GMT")
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, body...)
	}
	return b
}

// headEnd returns the length of the request head in b (through the blank
// line that ends it), or -1 when b does not hold a whole head yet.
func headEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 { // bare LF line ends, as net/http accepts
		return i + 2
	}
	return -1
}

// route decides the answer to a request head and whether it is a HEAD.
func route(head []byte) (status, bool) {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || bytes.ContainsAny(method, "\t ") {
		return http400, false
	}
	major, minor, ok := bytes.Cut(proto, []byte("."))
	if !ok || !bytes.HasPrefix(major, []byte("HTTP/")) || len(major) == len("HTTP/") || len(minor) == 0 ||
		!digits(major[len("HTTP/"):]) || !digits(minor) {
		return http400, false
	}
	if string(major) != "HTTP/1" {
		return http505, false
	}
	u, err := url.ParseRequestURI(string(target))
	if err != nil {
		return http400, false
	}
	isHead := string(method) == "HEAD"
	switch {
	case u.Path != HealthPath:
		return http404, isHead
	case string(method) != "GET" && !isHead:
		return http405, false
	}
	return http200, isHead
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// hasBody reports whether the head announces a request body.
func hasBody(head []byte) bool {
	for _, line := range bytes.Split(head, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")):
			return true
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) && string(value) != "0":
			return true
		}
	}
	return false
}
