package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
)

// noLeaks checks, after every other cleanup of t, that t started no
// goroutine that is still running.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func matrixServer(t *testing.T, m *matrix.Matrix) (*httptest.Server, *[]string) {
	t.Helper()
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != matrix.Path {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("check") == "quic" {
			http.Error(w, `check="quic": not one of ...`, http.StatusBadRequest)
			return
		}
		queries = append(queries, r.URL.RawQuery)
		_ = json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		srv.Close()
	})
	return srv, &queries
}

func TestMatrixCmd(t *testing.T) {
	noLeaks(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := &matrix.Matrix{GeneratedAt: at, Window: "1m0s", WindowSeconds: 60,
		Pairs: []matrix.Pair{{Pair: "linux->linux", SrcOS: "linux", DstOS: "linux", Checks: map[string]matrix.CheckSummary{
			"http": {Samples: 10, SuccessRate: 1, Phases: map[string]matrix.PhaseSummary{"first_byte": {Samples: 10, P50: 0.0011, P90: 0.0019}}}}}},
		Cells: []matrix.Cell{{Src: "a", SrcOS: "linux", Dst: "b", DstOS: "linux", Check: "http", Outcome: "success",
			Phases: map[string]float64{"first_byte": 0.0011}, At: at}}}
	srv, queries := matrixServer(t, m)
	run := func(args ...string) (string, error) {
		cmd := newMatrixCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}

	out, err := run("--url", srv.URL+"/", "--check", "http", "--phase", "first_byte")
	require.NoError(t, err)
	assert.Equal(t, "check=http", (*queries)[len(*queries)-1], "only the shown check's cells are fetched")
	assert.Contains(t, out, "check http, phase first_byte, window 1m0s")
	assert.Contains(t, out, "1.1ms / 1.9ms")
	assert.Contains(t, out, "linux   a -\n") // one column, b, at 1.1 ms

	out, err = run("--url", srv.URL, "--json")
	require.NoError(t, err)
	assert.Equal(t, "", (*queries)[len(*queries)-1])
	var back matrix.Matrix
	require.NoError(t, json.Unmarshal([]byte(out), &back))
	assert.Equal(t, m.Cells, back.Cells)

	out, err = run("--url", srv.URL, "--check", "http", "--color", "always")
	require.NoError(t, err)
	assert.Contains(t, out, "\x1b[48;5;")

	_, err = run("--url", srv.URL, "--check", "quic")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400 Bad Request")
	assert.Contains(t, err.Error(), "quic")

	_, err = run("--url", "ftp://x")
	assert.ErrorContains(t, err, "want http(s)://HOST:PORT")
	_, err = run("--url", srv.URL, "--color", "sometimes")
	assert.ErrorContains(t, err, "--color")
}

// An operator whose port-forward is not running, or whose --url points at
// something else, is told so in one line.
func TestMatrixSaysWhatIsWrongWithTheURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	_, err = execute(t, "matrix", "--url", closed)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is the port-forward running?")

	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html><body>" + strings.Repeat("<p>proxy error</p>", 200) + "</body></html>"))
	}))
	defer html.Close()
	_, err = execute(t, "matrix", "--url", html.URL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "502 Bad Gateway with a text/html page: is --url the aggregator")
	assert.NotContains(t, err.Error(), "<html>")

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>Grafana</html>"))
	}))
	defer page.Close()
	_, err = execute(t, "matrix", "--url", page.URL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not the aggregator's JSON")
}
