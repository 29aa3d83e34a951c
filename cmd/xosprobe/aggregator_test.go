package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestAggregatorConfig(t *testing.T) {
	dir := tempDir(t)
	tokens := writeFile(t, dir, "tokens", "tok-a\n\ntok-b\n")
	secret := writeFile(t, dir, "secret", "replica-secret\n")
	twoLines := writeFile(t, dir, "two", "a\nb\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // in the output, or in the error when err
		err  bool
	}{
		{name: "static", args: []string{"--token-file", tokens}, want: "configuration ok: listen :9446, static token, delta window 1m0s"},
		{name: "peers", args: []string{"--shared-token", "x", "--peer-url", "http://10.0.0.2:9446,http://10.0.0.3:9446", "--replication-secret-file", secret},
			want: "peers [http://10.0.0.2:9446 http://10.0.0.3:9446]"},
		{name: "both token flags", args: []string{"--token-file", tokens, "--shared-token", "x"}, err: true, want: "not both"},
		{name: "peers without secret", args: []string{"--shared-token", "x", "--peer-url", "http://10.0.0.2:9446"}, err: true, want: "--replication-secret-file"},
		{name: "secret of two lines", args: []string{"--shared-token", "x", "--replication-secret-file", twoLines}, err: true, want: "want one line"},
		{name: "bad peer dns", args: []string{"--shared-token", "x", "--peer-dns", "nohost", "--replication-secret-file", secret}, err: true, want: "HOST:PORT"},
		{name: "peer dns without self", args: []string{"--shared-token", "x", "--peer-dns", "peers.svc:9446", "--replication-secret-file", secret}, err: true, want: "--advertise-url"},
		{name: "bad peer url", args: []string{"--shared-token", "x", "--peer-url", "ftp://x", "--replication-secret-file", secret}, err: true, want: "want http(s)://host:port"},
		{name: "window too long", args: []string{"--shared-token", "x", "--delta-window", "30m"}, err: true, want: "longer than the sketches retain"},
		{name: "negative window", args: []string{"--shared-token", "x", "--compute-interval", "0s"}, err: true, want: "--compute-interval"},
		{name: "token review without cluster", args: []string{"--kubeconfig", filepath.Join(dir, "missing")}, err: true, want: "TokenReview"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_IP", "")
			cmd := newAggregatorCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"--check-config", "--delta-window", "1m"}, tc.args...))
			err := cmd.ExecuteContext(context.Background())
			if tc.err {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				return
			}
			require.NoError(t, err)
			assert.Contains(t, out.String(), tc.want)
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestAggregatorServesAndMatrixRenders runs `xosprobe aggregator` in static
// mode, sends it a batch, renders it with `xosprobe matrix`, and stops it
// through the context as SIGTERM would.
func TestAggregatorServesAndMatrixRenders(t *testing.T) {
	noLeaks(t)
	dir := tempDir(t)
	tokens := writeFile(t, dir, "tokens", "agent-token\n")
	addr := freeAddr(t)
	base := "http://" + addr

	ctx, cancel := context.WithCancel(context.Background())
	cmd := newAggregatorCmd()
	var logs bytes.Buffer
	cmd.SetErr(&logs)
	cmd.SetArgs([]string{"--listen", addr, "--token-file", tokens, "--shutdown-delay", "0s", "--compute-interval", "50ms"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
		assert.Contains(t, logs.String(), "shutting down")
		http.DefaultClient.CloseIdleConnections()
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + aggregator.ReadyPath)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)

	now := time.Now()
	batch := &wire.Batch{ID: "lin-1/1", Agent: wire.Agent{Pod: "agent-lin-1", Node: "lin-1", OS: "linux"}, Sent: now}
	for i := range 30 {
		for _, dst := range []struct{ node, os string }{{"lin-2", "linux"}, {"win-1", "windows"}} {
			d := time.Duration(400+i) * time.Microsecond
			if dst.os == "windows" {
				d += 9 * time.Millisecond
			}
			batch.Results = append(batch.Results, wire.Result{Check: "tcp", DstNode: dst.node, DstOS: dst.os, Outcome: "success",
				Start: now.Add(-time.Second), Phases: []wire.Phase{{Name: "connect", Duration: d}}})
		}
	}
	body, err := wire.Encode(nil, batch)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, base+aggregator.ResultsPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set("Authorization", "Bearer agent-token")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	var out bytes.Buffer
	require.Eventually(t, func() bool {
		out.Reset()
		m := newMatrixCmd()
		m.SetOut(&out)
		m.SetArgs([]string{"--url", base})
		return m.ExecuteContext(context.Background()) == nil && strings.Contains(out.String(), "Δ +9")
	}, 5*time.Second, 50*time.Millisecond, "matrix output:\n%s", &out)
	text := out.String()
	assert.Contains(t, text, "check tcp, phase connect, window 5m0s")
	assert.Contains(t, text, "(baseline)")
	assert.Contains(t, text, "linux   lin-1")
	assert.NotContains(t, text, "\x1b[", "not a terminal: no colour")

	metrics, err := http.Get(base + aggregator.MetricsPath)
	require.NoError(t, err)
	defer metrics.Body.Close()
	var mb bytes.Buffer
	_, _ = mb.ReadFrom(metrics.Body)
	assert.Contains(t, mb.String(), `xosprobe_cross_os_delta_seconds{check="tcp",pair="linux->windows",phase="connect",quantile="0.5"}`)
}
