package responder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Responder {
	t.Helper()
	r, err := Listen(Config{HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", AllowAddr: "127.0.0.1:0", DenyAddr: "127.0.0.1:0", Node: "n1", OS: "linux"},
		slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func TestEveryProbeOfTheSixPassesAgainstIt(t *testing.T) {
	r := start(t)
	p := probe.New()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for check, target := range map[probe.Check]probe.Target{
		probe.CheckTCP:         {Addr: r.Addr("tcp").String()},
		probe.CheckHTTP:        {Addr: r.Addr("http").String()},
		probe.CheckService:     {ServiceAddr: r.Addr("http").String()},
		probe.CheckNetpolAllow: {Addr: r.Addr("allow").String(), Expect: probe.VerdictAllow},
	} {
		res := p.Func(check)(ctx, target)
		assert.Equal(t, probe.OutcomeSuccess, res.Outcome, "%s: %s", check, res.Detail)
	}
	// No policy engine here, so the deny port is open: the probe must say so.
	res := p.NetpolDeny(ctx, probe.Target{Addr: r.Addr("deny").String(), Expect: probe.VerdictDeny})
	assert.Equal(t, probe.OutcomePolicyNotEnforced, res.Outcome)
}

func TestHealthEndpoint(t *testing.T) {
	base := "http://" + start(t).Addr("http").String()
	cases := []struct {
		name, method, path string
		header             http.Header
		want               int
	}{
		{"get", http.MethodGet, HealthPath, nil, http.StatusOK},
		{"head", http.MethodHead, HealthPath, nil, http.StatusOK},
		{"post refused", http.MethodPost, HealthPath, nil, http.StatusMethodNotAllowed},
		{"query ignored", http.MethodGet, HealthPath + "?verbose=1", nil, http.StatusOK},
		{"unknown path", http.MethodGet, "/admin", nil, http.StatusNotFound},
		{"oversized headers", http.MethodGet, HealthPath, http.Header{"X-Big": {strings.Repeat("a", 64<<10)}}, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(""))
			require.NoError(t, err)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tc.want, resp.StatusCode)
			assert.Less(t, len(body), 200, "answers stay small: nothing to amplify")
			if tc.want == http.StatusOK && tc.method == http.MethodGet {
				assert.Equal(t, "ok linux n1\n", string(body))
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	c, err := net.Dial("tcp", start(t).Addr("http").String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")) // never finishes the headers
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(c)
	assert.NoError(t, err, "the server closes the connection after its exchange timeout")
}

func TestListenFailureClosesWhatItOpened(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	_, err = Listen(Config{HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", AllowAddr: busy.Addr().String(), DenyAddr: "127.0.0.1:0"},
		slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "allow port")
}

// flakyListener fails its first Accepts the way Windows does for a
// connection reset before it was accepted.
type flakyListener struct {
	net.Listener
	failures int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.failures > 0 {
		f.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: errors.New("acceptex: winapi error #10057")}
	}
	return f.Listener.Accept()
}

func TestAcceptErrorsDoNotStopTheHealthEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := newHealth([]byte("ok\n"), slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { h.serve(&flakyListener{Listener: l, failures: 3}); close(done) }()
	resp, err := http.Get("http://" + l.Addr().String() + HealthPath)
	require.NoError(t, err, "the endpoint survived three accept errors")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	http.DefaultClient.CloseIdleConnections()
	require.NoError(t, l.Close())
	<-done
}

// exchange writes req on a new connection to addr and returns all it reads
// back until the server closes.
func exchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte(req))
	require.NoError(t, err)
	out, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(out)
}

func TestHealthRequestsOutsideWhatHTTPClientsSend(t *testing.T) {
	addr := start(t).Addr("http").String()
	cases := []struct{ name, req, status, body string }{
		{"HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n", "200 OK", "ok linux n1\n"},
		{"bare line feeds", "GET /healthz HTTP/1.1\nHost: x\n\n", "200 OK", "ok linux n1\n"},
		{"absolute form", "GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", "ok linux n1\n"},
		{"head has no body", "HEAD /healthz HTTP/1.1\r\n\r\n", "200 OK", ""},
		{"no version", "GET /healthz\r\n\r\n", "400 Bad Request", "Bad Request\n"},
		{"garbage", "\x16\x03\x01\x02\x00\x01\r\n\r\n", "400 Bad Request", "Bad Request\n"},
		{"not a number", "GET /healthz HTTP/1.x\r\n\r\n", "400 Bad Request", "Bad Request\n"},
		{"bad target", "GET healthz HTTP/1.1\r\n\r\n", "400 Bad Request", "Bad Request\n"},
		{"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505 HTTP Version Not Supported", "HTTP Version Not Supported\n"},
		// Bytes past the head (a body, a second request) are read and
		// dropped before close, so the answer is not lost to a reset.
		{"body", "POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nx=1&y", "405 Method Not Allowed", "Method Not Allowed\n"},
		{"pipelined", "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", "200 OK", "ok linux n1\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := exchange(t, addr, tc.req)
			head, body, ok := strings.Cut(out, "\r\n\r\n")
			require.True(t, ok, "a whole answer: %q", out)
			assert.True(t, strings.HasPrefix(head, "HTTP/1.1 "+tc.status+"\r\n"), "status line of %q", head)
			assert.Contains(t, head, "\r\nConnection: close\r\n")
			assert.Equal(t, tc.body, body, "one answer, then close")
		})
	}
}

func TestAnswerSurvivesABodyItDoesNotRead(t *testing.T) {
	c, err := net.Dial("tcp", start(t).Addr("http").String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	body := strings.Repeat("x", 1<<20)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, _ = io.WriteString(c, "POST /healthz HTTP/1.1\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}()
	out, err := io.ReadAll(c)
	require.NoError(t, err, "a reset instead of the answer")
	assert.True(t, strings.HasPrefix(string(out), "HTTP/1.1 405 Method Not Allowed\r\n"), "%q", out)
	<-sent
}

func TestHealthAnswersNoMoreThanItsLimitAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	logged := &lockedBuffer{}
	h := newHealth([]byte("ok\n"), slog.New(slog.NewTextHandler(logged, nil)))
	h.timeout = 3 * time.Second
	done := make(chan struct{})
	go func() { h.serve(l); close(done) }()
	defer func() { l.Close(); <-done }()

	// maxExchanges clients that never finish their request hold every slot,
	// from as many sources as their shares need.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := range maxExchanges {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 1+i/maxExchangesPerSource), l.Addr().String())
		_, err = c.Write([]byte("GET /healthz HTTP/1.1\r\n"))
		require.NoError(t, err)
		idle = append(idle, c)
	}
	require.Eventually(t, func() bool { return len(h.slots) == maxExchanges }, 5*time.Second, 5*time.Millisecond)

	// One more, from a source with no connection yet, is closed at once,
	// unanswered, long before the slots' timeout.
	c := dialFrom(t, "127.0.0.200", l.Addr().String())
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(h.timeout/2)))
	_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\n\r\n"))
	out, err := io.ReadAll(c)
	if err != nil {
		assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "closed at once, not left waiting")
	}
	assert.Empty(t, out)
	require.Eventually(t, func() bool { return strings.Contains(logged.String(), "at its limit") }, time.Second, time.Millisecond,
		"the refusal is logged")

	// A freed slot serves again.
	idle[0].Close()
	idle = idle[1:]
	require.Eventually(t, func() bool { return len(h.slots) < maxExchanges }, 5*time.Second, 5*time.Millisecond)
	assert.True(t, strings.HasPrefix(exchange(t, l.Addr().String(), "GET /healthz HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK\r\n"))
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	return c
}

// One source that opens connections and sends nothing (slowloris) holds at
// most its share of the slots: another source's probes are still answered.
func TestHealthSharesSlotsBetweenSources(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	logged := &lockedBuffer{}
	h := newHealth([]byte("ok\n"), slog.New(slog.NewTextHandler(logged, nil)))
	h.timeout = 5 * time.Second
	done := make(chan struct{})
	go func() { h.serve(l); close(done) }()
	defer func() { l.Close(); <-done }()

	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for range maxExchanges + 20 {
		c := dialFrom(t, "127.0.0.9", l.Addr().String())
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\n")) // and never the rest
		slow = append(slow, c)
	}
	require.Eventually(t, func() bool { return strings.Contains(logged.String(), "share of connections") }, 5*time.Second, 5*time.Millisecond,
		"the refusals beyond the share are logged")
	assert.LessOrEqual(t, len(h.slots), maxExchangesPerSource, "one source holds more than its share")

	for i := range 20 {
		c := dialFrom(t, "127.0.0.10", l.Addr().String())
		require.NoError(t, c.SetDeadline(time.Now().Add(time.Second)))
		_, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		out, err := io.ReadAll(c)
		c.Close()
		require.NoError(t, err, "probe %d from another source", i)
		assert.True(t, strings.HasPrefix(string(out), "HTTP/1.1 200 OK\r\n"), "probe %d from another source: %q", i, out)
	}
}

// lockedBuffer is a log sink the test reads while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
