package aggregator

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGracefulShutdown: on cancellation readiness turns false at once while
// the server keeps serving (and taking batches) for ShutdownDelay.
func TestGracefulShutdown(t *testing.T) {
	ln := listen(t)
	s, err := New(Config{Auth: sharedAuth(t, testToken), Now: newClock(t0).Now, ShutdownDelay: 400 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	ready := func() int {
		req, _ := http.NewRequest(http.MethodGet, url+ReadyPath, nil)
		return do(t, req).code
	}
	require.Eventually(t, func() bool { return ready() == http.StatusOK }, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.Eventually(t, func() bool { return ready() == http.StatusServiceUnavailable }, time.Second, 5*time.Millisecond)
	a := &agent{node: "lin", os: "linux"}
	r := send(t, url, a.batch(res("tcp", "win", "windows", "success", t0, connect(time.Millisecond))))
	assert.Equal(t, http.StatusOK, r.code, "batches are still taken while the Service drains")
	req, _ := http.NewRequest(http.MethodGet, url+HealthPath, nil)
	assert.Equal(t, http.StatusOK, do(t, req).code)
	http.DefaultClient.CloseIdleConnections()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	assert.Equal(t, 0.0, mustMetric(t, s, Ready, nil))
}
