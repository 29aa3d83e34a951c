package aggregator

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
