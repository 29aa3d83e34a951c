package agent

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Idle keep-alive connections cannot pile up on the admin port: with
// adminMaxConnections held, the next client waits; a freed slot serves it.
func TestAdminPortCapsConnections(t *testing.T) {
	l, err := listenAdmin("127.0.0.1:0")
	require.NoError(t, err)
	srv := newAdminServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	addr := l.Addr().String()

	var held []net.Conn
	for range adminMaxConnections {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "connection %d of the cap was not served", len(held)+1)
		resp.Body.Close()
		held = append(held, c)
	}

	quick := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 300 * time.Millisecond}
	if resp, err := quick.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatal("a connection beyond the cap was served: no cap")
	}

	held[0].Close()
	patient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := patient.Get("http://" + addr + "/metrics")
	require.NoError(t, err, "a freed slot did not serve the waiting client")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// Every phase of an admin connection has a deadline: without them a client
// that never sends, never reads or stays idle holds its slot for ever.
func TestAdminServerHasDeadlines(t *testing.T) {
	s := newAdminServer(http.NotFoundHandler())
	for name, d := range map[string]time.Duration{"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout,
		"WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout} {
		assert.Positive(t, d, name)
		assert.LessOrEqual(t, d, time.Minute, name)
	}
}
