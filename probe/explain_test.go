package probe

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEveryOutcomeIsExplained(t *testing.T) {
	fallback := OutcomeError.Explain()
	for _, o := range []Outcome{
		OutcomeSuccess, OutcomeDNSNXDomain, OutcomeDNSTimeout, OutcomeDNSNoAnswer, OutcomeDNSError,
		OutcomeConnectRefused, OutcomeConnectTimeout, OutcomeUnreachable, OutcomeReset,
		OutcomeHTTPStatus, OutcomeHTTPTimeout, OutcomeHTTPBodyTooBig, OutcomeHTTPProtocol,
		OutcomePolicyNotEnforced, OutcomeUnexpectedBlock, OutcomeBadTarget, OutcomeCanceled,
	} {
		assert.NotEqual(t, fallback, o.Explain(), o)
	}
}
