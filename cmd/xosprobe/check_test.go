package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/agent/responder"
	"github.com/xosprobe/xosprobe/probe"
)

func startResponder(t *testing.T) *responder.Responder {
	t.Helper()
	r, err := responder.Listen(responder.Config{HTTPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", AllowAddr: "127.0.0.1:0", DenyAddr: "127.0.0.1:0"},
		slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCheckPassesAgainstAResponder(t *testing.T) {
	r := startResponder(t)
	out, err := execute(t, "check", "--target", r.Addr("http").String(), "--service", r.Addr("http").String(),
		"--allow-target", r.Addr("allow").String())
	require.NoError(t, err, out)
	assert.Contains(t, out, "clock ")
	assert.Regexp(t, `(?m)^tcp\s+PASS\s+-\s+connect=`, out)
	assert.Regexp(t, `(?m)^http\s+PASS\s+-\s+connect=\S+ first_byte=\S+ total=`, out)
	assert.Regexp(t, `(?m)^dns\s+SKIPPED\s+no --name given`, out)
	assert.Regexp(t, `(?m)^netpol-deny\s+SKIPPED`, out)
	assert.Contains(t, out, "all steps that ran passed")
}

func TestCheckExplainsAFailure(t *testing.T) {
	r := startResponder(t)
	out, err := execute(t, "check", "--deny-target", r.Addr("deny").String())
	require.ErrorIs(t, err, errFailed)
	assert.Regexp(t, `(?m)^netpol-deny\s+FAIL\s+policy_not_enforced`, out)
	assert.Contains(t, out, probe.OutcomePolicyNotEnforced.Explain())
	assert.Contains(t, out, "FAILED")
}

func TestCheckJSON(t *testing.T) {
	r := startResponder(t)
	out, err := execute(t, "check", "--json", "--target", r.Addr("tcp").String()+"0") // port out of range
	require.ErrorIs(t, err, errFailed)
	var rep checkReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.False(t, rep.Passed)
	require.Len(t, rep.Steps, len(probe.Checks))
	for i, s := range rep.Steps {
		assert.Equal(t, probe.Checks[i], s.Check)
	}
	tcp := rep.Steps[1]
	require.NotNil(t, tcp.Result)
	assert.Equal(t, "fail", tcp.Status)
	assert.Equal(t, probe.OutcomeBadTarget, tcp.Result.Outcome)
	assert.Positive(t, rep.Clock.Step)
	assert.Equal(t, "skipped", rep.Steps[0].Status)
}

func TestCheckRejectsStrayArguments(t *testing.T) {
	_, err := execute(t, "check", "10.0.0.1:80")
	require.Error(t, err)
	assert.NotErrorIs(t, err, errFailed)
}
