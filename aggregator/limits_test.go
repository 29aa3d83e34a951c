package aggregator

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// holdConn opens a keep-alive connection that was served once and now sits
// idle on the server, as an agent's pooled connection (or an attacker's).
func holdConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte("GET " + HealthPath + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "the connection was not served")
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return c
}

// MaxConnections bounds what idle keep-alive connections can hold: with the
// cap held, a new client waits to be accepted; a freed slot serves it.
func TestServerCapsConnections(t *testing.T) {
	s := startServer(t, Config{MaxConnections: 2}, nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	first := holdConn(t, addr)
	holdConn(t, addr)

	quick := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 300 * time.Millisecond}
	if resp, err := quick.Get(s.URL + HealthPath); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served beside two held ones: no cap")
	}

	first.Close()
	patient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := patient.Get(s.URL + HealthPath)
	require.NoError(t, err, "a freed slot did not serve the waiting client")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// slowBody starts a batch request from local address src that declares n
// body bytes and sends only a few, holding its share of the budget until
// the connection closes.
func slowBody(t *testing.T, url, src string, n int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\nabc",
		ResultsPath, wire.ContentType, testToken, n)
	require.NoError(t, err)
	return c
}

// status sends a small batch from src and returns the answer's status code.
func status(t *testing.T, url, src string) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	a := &agent{node: "lin-" + src, os: "linux"}
	req, err := http.NewRequest(http.MethodPost, url+ResultsPath, strings.NewReader(string(encode(t, a.batch()))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Slow senders of large bodies hold at most their share of the body budget:
// one source cannot take more than its own, and the others keep sending.
func TestIngestBudgetBoundsBodiesInFlight(t *testing.T) {
	const mib = 1 << 20
	s := startServer(t, Config{Now: newClock(t0).Now, MaxBodyBytes: mib, MaxIngestBytes: 3 * mib, MaxIngestBytesPerSource: 2 * mib}, nil)
	waitReading := func(n int64) {
		require.Eventually(t, func() bool {
			s.ingestBudget.mu.Lock()
			defer s.ingestBudget.mu.Unlock()
			return s.ingestBudget.total == n
		}, 5*time.Second, 5*time.Millisecond)
	}
	slowBody(t, s.URL, "127.0.0.2", mib)
	slowBody(t, s.URL, "127.0.0.2", mib)
	waitReading(2 * mib)

	// The slow source has spent its share; a third body of it is refused.
	c := slowBody(t, s.URL, "127.0.0.2", mib)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))

	// Another source's batches still go through.
	assert.Equal(t, http.StatusOK, status(t, s.URL, "127.0.0.3"))

	// A third slow source fills the total: then everyone waits, and retries.
	slowBody(t, s.URL, "127.0.0.4", mib)
	waitReading(3 * mib)
	assert.Equal(t, http.StatusServiceUnavailable, status(t, s.URL, "127.0.0.3"))
}
