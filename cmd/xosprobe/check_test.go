package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

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
	closed := closedLoopbackPort(t)
	out, err := execute(t, "check", "--json", "--target", closed)
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
	assert.Equal(t, probe.OutcomeConnectRefused, tcp.Result.Outcome)
	require.NotNil(t, rep.Target)
	assert.Equal(t, closed, rep.Target.Target)
	// Nothing listens, so the source address comes from a connected UDP
	// socket: Linux reports it; Wine leaves it unspecified (docs/windows-
	// under-wine.md), and check then says it does not know.
	if runtime.GOOS != "windows" {
		assert.Equal(t, "127.0.0.1", rep.Target.Source)
	}
	assert.Positive(t, rep.Clock.Step)
	assert.Equal(t, "skipped", rep.Steps[0].Status)
}

func TestCheckRejectsStrayArguments(t *testing.T) {
	_, err := execute(t, "check", "10.0.0.1:80", "10.0.0.2:80")
	require.Error(t, err)
	assert.NotErrorIs(t, err, errFailed)
}

// A zero or negative deadline is bad usage (exit 2), not a timeout verdict
// against a healthy target.
func TestCheckRejectsNonPositiveTimeouts(t *testing.T) {
	for _, args := range [][]string{{"--timeout", "0s"}, {"--timeout", "-1s"}, {"--deny-timeout", "0s"}} {
		_, err := execute(t, append([]string{"check", "--target", startResponder(t).Addr("http").String()}, args...)...)
		require.Error(t, err, "%v", args)
		assert.NotErrorIs(t, err, errFailed, "%v: reported as a failed check instead of bad usage", args)
		assert.Contains(t, err.Error(), "must be positive", "%v", args)
	}
}

// closedLoopbackPort returns a loopback address nothing listens on.
func closedLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// A refusal proves enforcement only toward a port known to listen: a
// --deny-target nobody vouches for may just be closed.
func TestCheckRefusalIsInconclusiveUnlessThePortListens(t *testing.T) {
	addr := closedLoopbackPort(t)
	tests := []struct {
		name       string
		listening  bool
		wantErr    error
		wantStatus string
		wantLines  []string
	}{
		{name: "deny target given by the user", wantErr: errInconclusive, wantStatus: "inconclusive", wantLines: []string{
			"NetworkPolicy toward " + addr + ": inconclusive — connection refused: a policy that rejects, or nothing listening; not proof of enforcement",
			"INCONCLUSIVE: no step failed, but not every step could tell",
		}},
		{name: "an agent's deny port", listening: true, wantStatus: "pass", wantLines: []string{
			"NetworkPolicy toward " + addr + ": enforced — blocked as expected (connect_refused)",
			"all steps that ran passed",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := checkConfig{timeout: 5 * time.Second, denyTimeout: time.Second}
			rep := runCheck(context.Background(), probe.New(), cfg, []step{{check: probe.CheckNetpolDeny,
				target: probe.Target{Addr: addr, Expect: probe.VerdictDeny, Listening: tc.listening}}})
			require.Len(t, rep.Steps, 1)
			assert.Equal(t, tc.wantStatus, rep.Steps[0].Status)
			assert.True(t, rep.Passed, "a refusal is never a failure")
			var out bytes.Buffer
			require.NoError(t, writeCheck(&out, rep, false))
			for _, line := range tc.wantLines {
				assert.Contains(t, out.String(), line+"\n")
			}
			assert.Equal(t, tc.listening, !rep.Inconclusive)
		})
	}

	t.Run("command", func(t *testing.T) {
		out, err := execute(t, "check", "--deny-target", addr)
		require.ErrorIs(t, err, errInconclusive, out)
		assert.Regexp(t, `(?m)^netpol-deny\s+INCONCLUSIVE\s+inconclusive\s`, out)
		assert.Contains(t, out, "NetworkPolicy toward "+addr+": inconclusive — connection refused: a policy that rejects, or nothing listening; not proof of enforcement\n")
		assert.NotContains(t, out, ": enforced")
		assert.Contains(t, out, probe.OutcomeInconclusive.Explain())

		out, err = execute(t, "check", "--json", "--deny-target", addr)
		require.ErrorIs(t, err, errInconclusive, out)
		var rep checkReport
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		assert.True(t, rep.Passed)
		assert.True(t, rep.Inconclusive)
		assert.Equal(t, "inconclusive", rep.Steps[5].Status)
		assert.Empty(t, rep.Steps[5].Result.Observed, "no verdict was observed")
	})

	// A failure elsewhere still fails the run: inconclusive never hides it.
	t.Run("with a failure", func(t *testing.T) {
		out, err := execute(t, "check", "--deny-target", addr, "--target", closedLoopbackPort(t))
		require.ErrorIs(t, err, errFailed, out)
		assert.Contains(t, out, "\nFAILED\n")
	})
}

// A NetworkPolicy step whose expectation depends on policy kinds the
// evaluator cannot see is observed, not judged: inconclusive (exit 3), never a
// failure, and its finding claims neither enforced nor not enforced.
func TestCheckDoesNotJudgeAnUnknownExpectation(t *testing.T) {
	for _, observed := range []probe.Verdict{probe.VerdictAllow, probe.VerdictDeny} {
		r := probe.Result{Check: probe.CheckNetpolDeny, Outcome: probe.OutcomeExpectationUnknown, Expected: probe.VerdictUnknown, Observed: observed}
		status, why := stepStatus(r)
		assert.Equal(t, "inconclusive", status, "observed %s", observed)
		assert.Contains(t, why, "policy explain")
		finding := enforcement("windows win-1 10.0.0.7", &r)
		assert.Contains(t, finding, "not judged", "observed %s", observed)
		assert.NotContains(t, finding, "NOT enforced")
		assert.NotContains(t, finding, ": enforced")
	}
	status, _ := stepStatus(probe.Result{Check: probe.CheckNetpolDeny, Outcome: probe.OutcomePolicyNotEnforced})
	assert.Equal(t, "fail", status, "a judged mismatch stays a failure")
	status, _ = stepStatus(probe.Result{Check: probe.CheckTCP, Outcome: probe.OutcomeSuccess})
	assert.Equal(t, "pass", status)
}
