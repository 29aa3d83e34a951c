package responder

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The health endpoint speaks just enough HTTP/1.1 itself instead of going
// through net/http's server: one read of the request head, one write of a fixed
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
	// maxExchangesPerSource is one source address's share of them: a client
	// that opens connections and sends slowly holds at most this many slots,
	// and the peers' probes (one agent per node, a few at once) keep theirs.
	maxExchangesPerSource = 16
	// refusedLogEvery spaces the log lines about refused connections.
	refusedLogEvery = time.Minute
)

// health answers the health endpoint.
type health struct {
	body    []byte // the GET answer's body
	timeout time.Duration
	slots   chan struct{}
	mu      sync.Mutex
	bySrc   map[netip.Addr]int // exchanges in progress per source address
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
		bySrc: map[netip.Addr]int{}, bufs: sync.Pool{New: func() any { return new([maxHeadBytes]byte) }}}
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
		src := sourceOf(c)
		if !h.takeShare(src) {
			c.Close()
			h.noteRefused("health endpoint: a source at its share of connections, closing its new ones unanswered",
				"source", src, "share", maxExchangesPerSource)
			continue
		}
		select {
		case h.slots <- struct{}{}:
		default:
			c.Close()
			h.giveShare(src)
			h.noteRefused("health endpoint at its limit: closing new connections unanswered", "limit", maxExchanges)
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.answer(c)
			<-h.slots
			h.giveShare(src)
		}()
	}
}

// sourceOf is the address a connection comes from (the zero Addr if none).
func sourceOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// takeShare counts one more exchange of src, unless src has its share.
func (h *health) takeShare(src netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bySrc[src] >= maxExchangesPerSource {
		return false
	}
	h.bySrc[src]++
	return true
}

func (h *health) giveShare(src netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bySrc[src]--; h.bySrc[src] <= 0 {
		delete(h.bySrc, src)
	}
}

// noteRefused counts a connection closed unanswered and logs msg with the
// count at most once per refusedLogEvery.
func (h *health) noteRefused(msg string, args ...any) {
	h.refused++
	if now := time.Now(); now.Sub(h.loggedAt) >= refusedLogEvery {
		h.log.Warn(msg, append(args, "refused", h.refused)...)
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
			_, _ = c.Write(h.reply(http.StatusRequestHeaderFieldsTooLarge, false))
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

// reply renders the answer with status code; head omits the body (HEAD requests).
func (h *health) reply(code int, head bool) []byte {
	body := h.body
	if code != http.StatusOK {
		body = []byte(http.StatusText(code) + "\n")
	}
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n"...)
	if code == http.StatusMethodNotAllowed {
		b = append(b, "Allow: GET, HEAD\r\n"...)
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
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

// route decides the answer's status code to a request head and whether the
// request is a HEAD.
func route(head []byte) (int, bool) {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || bytes.ContainsAny(method, "\t ") {
		return http.StatusBadRequest, false
	}
	major, _, ok := http.ParseHTTPVersion(string(proto))
	switch {
	case !ok:
		return http.StatusBadRequest, false
	case major != 1:
		return http.StatusHTTPVersionNotSupported, false
	}
	u, err := url.ParseRequestURI(string(target))
	if err != nil {
		return http.StatusBadRequest, false
	}
	isHead := string(method) == http.MethodHead
	switch {
	case u.Path != HealthPath:
		return http.StatusNotFound, isHead
	case string(method) != http.MethodGet && !isHead:
		return http.StatusMethodNotAllowed, false
	}
	return http.StatusOK, isHead
}

// hasBody reports whether the head announces a request body.
func hasBody(head []byte) bool {
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		if bytes.EqualFold(name, []byte("Transfer-Encoding")) ||
			bytes.EqualFold(name, []byte("Content-Length")) && string(value) != "0" {
			return true
		}
	}
	return false
}
