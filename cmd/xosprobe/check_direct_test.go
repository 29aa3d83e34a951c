package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/xosprobe/xosprobe/probe"
)

// Usage errors exit 2 before any probe runs, naming the flag.
func TestCheckUsageErrorsBeforeAnyProbe(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "10.0.0.1"}, "--target"},
		{[]string{"10.0.0.1"}, "--target"},
		{[]string{"--target", "10.0.0.1:99999"}, "from 1 to 65535"},
		{[]string{"--target", "10.0.0.1:80", "--path", "healthz"}, "--path"},
		{[]string{"--target", "10.0.0.1:80", "--timeout", "0s"}, "--timeout"},
		{[]string{"--target", "10.0.0.1:80", "--count", "0"}, "--count"},
		{[]string{"--deny-target", ":80"}, "--deny-target"},
		{[]string{"10.0.0.1:80", "--target", "10.0.0.2:80"}, "give the target once"},
		{[]string{"10.0.0.1:80", "10.0.0.2:80"}, "accepts at most 1 arg"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd, cfg := checkCommand()
			cfg.newProber = func() *probe.Prober { t.Error("a probe ran"); return probe.New() }
			cmd.SetArgs(tc.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.ExecuteContext(context.Background())
			require.Error(t, err)
			assert.False(t, errors.Is(err, errFailed) || errors.Is(err, errInconclusive), "exit 2, not a probe verdict: %v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// `check HOST:PORT` runs tcp and http toward it and starts with what the
// name resolved to and the source address.
func TestCheckPositionalTarget(t *testing.T) {
	r := startResponder(t)
	port := strconv.Itoa(r.Addr("http").(*net.TCPAddr).Port)
	for _, target := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		t.Run(target, func(t *testing.T) {
			out, err := execute(t, "check", target)
			require.NoError(t, err, out)
			first, _, _ := strings.Cut(out, "\n")
			if strings.HasPrefix(target, "localhost") {
				assert.Regexp(t, `^target localhost:\d+: resolves to .*127\.0\.0\.1.*; source address 127\.0\.0\.1$`, first)
			} else {
				assert.Equal(t, "target "+target+": an address; source address 127.0.0.1", first)
			}
			assert.Regexp(t, `(?m)^tcp\s+PASS`, out)
			assert.Regexp(t, `(?m)^http\s+PASS`, out)
			assert.Regexp(t, `(?m)^dns\s+SKIPPED\s+no --name given`, out)
		})
	}
}

// fakeRuns answers every step with outcome o for tcp and success otherwise,
// counting the runs per check.
func fakeRuns(o probe.Outcome, runs map[probe.Check]*atomic.Int32) func(probe.Check) probe.Func {
	return func(c probe.Check) probe.Func {
		return func(_ context.Context, tg probe.Target) probe.Result {
			runs[c].Add(1)
			r := probe.Result{Check: c, Addr: tg.Addr, Outcome: probe.OutcomeSuccess,
				Phases: []probe.PhaseDuration{{Phase: probe.PhaseConnect, Duration: time.Duration(runs[c].Load()) * time.Millisecond}}}
			if c == probe.CheckTCP {
				r.Outcome = o
			}
			return r
		}
	}
}

func newRuns() map[probe.Check]*atomic.Int32 {
	m := map[probe.Check]*atomic.Int32{}
	for _, c := range probe.Checks {
		m[c] = &atomic.Int32{}
	}
	return m
}

// http toward an address tcp could not reach is skipped with the reason, not
// run into its own timeout.
func TestCheckSkipsHTTPAfterTCPTimedOut(t *testing.T) {
	runs := newRuns()
	cmd, cfg := checkCommand()
	cfg.runFunc = fakeRuns(probe.OutcomeConnectTimeout, runs)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"127.0.0.1:9"})
	require.ErrorIs(t, cmd.ExecuteContext(context.Background()), errFailed)
	assert.Regexp(t, `(?m)^tcp\s+FAIL\s+connect_timeout`, out.String())
	assert.Regexp(t, `(?m)^http\s+SKIPPED\s+tcp to the same address timed out`, out.String())
	assert.Zero(t, runs[probe.CheckHTTP].Load(), "http ran")

	// Refused is no timeout: http still runs and says what it saw.
	runs = newRuns()
	cmd, cfg = checkCommand()
	cfg.runFunc = fakeRuns(probe.OutcomeConnectRefused, runs)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"127.0.0.1:9"})
	require.ErrorIs(t, cmd.ExecuteContext(context.Background()), errFailed)
	assert.EqualValues(t, 1, runs[probe.CheckHTTP].Load())
}

// --count N runs every step N times and reports min/p50/max per phase; the
// JUnit report has a case per step with its verdict.
func TestCheckCountAndJUnit(t *testing.T) {
	runs := newRuns()
	cmd, cfg := checkCommand()
	cfg.runFunc = fakeRuns(probe.OutcomeSuccess, runs)
	junit := filepath.Join(tempDir(t), "check.xml")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"127.0.0.1:9", "--count", "5", "--junit", junit})
	require.NoError(t, cmd.ExecuteContext(context.Background()), out.String())
	assert.EqualValues(t, 5, runs[probe.CheckTCP].Load())
	assert.Contains(t, out.String(), "TIMINGS (ms, min/p50/max)")
	// The fake's connect takes 1..5 ms over the five runs.
	assert.Regexp(t, `(?m)^tcp\s+PASS 5/5\s+-\s+connect=1\.000/3\.000/5\.000`, out.String())

	data, err := os.ReadFile(junit)
	require.NoError(t, err)
	var suite junitSuite
	require.NoError(t, xml.Unmarshal(data, &suite), string(data))
	assert.Equal(t, 6, suite.Tests)
	assert.Equal(t, 0, suite.Failures)
	assert.Equal(t, 4, suite.Skipped, "dns, service and both netpol steps had no target")
	assert.Equal(t, "127.0.0.1:9", suite.Cases[1].Class)
	assert.Equal(t, "tcp", suite.Cases[1].Name)

	// One failing run fails the step and the JUnit case.
	runs = newRuns()
	cmd, cfg = checkCommand()
	cfg.runFunc = fakeRuns(probe.OutcomeConnectRefused, runs)
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"127.0.0.1:9", "--count", "2", "--junit", junit})
	require.ErrorIs(t, cmd.ExecuteContext(context.Background()), errFailed)
	data, err = os.ReadFile(junit)
	require.NoError(t, err)
	suite = junitSuite{}
	require.NoError(t, xml.Unmarshal(data, &suite))
	assert.Equal(t, 1, suite.Failures)
	require.NotNil(t, suite.Cases[1].Failure)
	assert.Equal(t, "connect_refused", suite.Cases[1].Failure.Message)
}

// In a pod whose API server forbids or refuses, check fails within seconds
// with the API's first error verbatim.
func TestCheckFailsFastWithTheAPIError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New(`User "system:serviceaccount:xosprobe:xosprobe-agent" cannot list resource "nodes"`))
	})
	cmd, cfg := checkCommand()
	cfg.kube.client = func() (kubernetes.Interface, error) { return client, nil }
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"--node", "lin-1", "--pod", "agent-lin-1", "--namespace", "xosprobe", "--kubeconfig", "unused"})
	err := cmd.ExecuteContext(context.Background())
	require.Error(t, err)
	// Not the informers' sync timeout after 30 s: the API's own words.
	assert.Contains(t, err.Error(), `nodes is forbidden: User "system:serviceaccount:xosprobe:xosprobe-agent" cannot list resource "nodes"`)
}

func TestVersionFlag(t *testing.T) {
	out, err := execute(t, "--version")
	require.NoError(t, err)
	v, _ := execute(t, "version")
	assert.Equal(t, v, out)
	assert.True(t, strings.HasPrefix(out, "xosprobe "), out)
}

// A step that takes long says so while it runs, on the progress stream.
func TestCheckAnnouncesSlowSteps(t *testing.T) {
	defer func(d time.Duration) { slowStep = d }(slowStep)
	slowStep = 10 * time.Millisecond
	cmd, cfg := checkCommand()
	var progress bytes.Buffer
	cfg.progress = &progress
	cfg.runFunc = func(c probe.Check) probe.Func {
		return func(ctx context.Context, tg probe.Target) probe.Result {
			if c == probe.CheckTCP {
				time.Sleep(100 * time.Millisecond)
			}
			return probe.Result{Check: c, Addr: tg.Addr, Outcome: probe.OutcomeSuccess}
		}
	}
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"127.0.0.1:9"})
	require.NoError(t, cmd.ExecuteContext(context.Background()))
	assert.Equal(t, "  tcp: still waiting after 10ms (deadline 5s)...\n", progress.String())
}

// What check needs to read the cluster is asked for by flag, not by the
// discovery package's field names.
func TestCheckNamesFlagsNotFields(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "lin-1", "--namespace", "xosprobe"}, "--pod ($POD_NAME)"},
		{[]string{"--node", "lin-1", "--pod", "p", "--namespace", "xosprobe", "--agent-selector", "a b"}, "--agent-selector"},
	} {
		cmd, cfg := checkCommand()
		cfg.kube.client = func() (kubernetes.Interface, error) { return fake.NewClientset(), nil }
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetArgs(append(tc.args, "--kubeconfig", "unused"))
		err := cmd.ExecuteContext(context.Background())
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
		for _, field := range []string{"PodName", "AgentSelector", "Config"} {
			assert.NotContains(t, err.Error(), field)
		}
	}
}
