package responder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
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
	done := make(chan error)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
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
	assert.NoError(t, err, "the server closes the connection after ReadHeaderTimeout")
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
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ReadHeaderTimeout: time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(steadyListener{&flakyListener{Listener: l, failures: 3}}) }()
	resp, err := http.Get("http://" + l.Addr().String())
	require.NoError(t, err, "the server survived three accept errors")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	http.DefaultClient.CloseIdleConnections()
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-done, http.ErrServerClosed)
}
