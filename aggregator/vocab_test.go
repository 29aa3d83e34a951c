package aggregator

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/xosprobe/xosprobe/probe"
)

// The aggregator keeps its own copy of the label values (it does not import
// probe); this keeps the copies in step.
func TestVocabularyMatchesProbe(t *testing.T) {
	var want []string
	for _, c := range probe.Checks {
		want = append(want, string(c))
	}
	assert.Equal(t, want, checks)
	for i, c := range checks {
		assert.Equal(t, i, checkIndex(c))
	}
	for _, p := range []probe.Phase{probe.PhaseResolveSystem, probe.PhaseResolveDirect, probe.PhaseResolveShort,
		probe.PhaseDNS, probe.PhaseConnect, probe.PhaseFirstByte, probe.PhaseTotal} {
		assert.GreaterOrEqual(t, phaseIndex(string(p)), 0, p)
	}
	for i, p := range phases {
		assert.Equal(t, i, phaseIndex(p))
	}
	for _, o := range []probe.Outcome{probe.OutcomeSuccess, probe.OutcomeDNSNXDomain, probe.OutcomeDNSTimeout,
		probe.OutcomeDNSNoAnswer, probe.OutcomeDNSError, probe.OutcomeConnectRefused, probe.OutcomeConnectTimeout,
		probe.OutcomeUnreachable, probe.OutcomeReset, probe.OutcomeHTTPStatus, probe.OutcomeHTTPTimeout,
		probe.OutcomeHTTPBodyTooBig, probe.OutcomeHTTPProtocol, probe.OutcomePolicyNotEnforced,
		probe.OutcomeUnexpectedBlock, probe.OutcomeBadTarget, probe.OutcomeCanceled, probe.OutcomeError} {
		assert.NotEqual(t, outcomeOther, outcomes[outcomeIndex(string(o))], o)
		assert.Equal(t, string(o), outcomes[outcomeIndex(string(o))])
	}
	assert.Equal(t, outcomeOther, outcomes[outcomeIndex("novel_failure")])
	for i, os := range oses {
		assert.Equal(t, i, osIndex(os))
	}
	assert.Equal(t, []string{"linux->linux", "linux->windows", "windows->linux", "windows->windows"}, pairNames)
}
