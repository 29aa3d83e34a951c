package probe

import (
	"context"
	"fmt"
	"time"
)

// NetpolAllow connects to the port NetworkPolicy should allow from this
// source (Target.Addr) and compares with Target.Expect.
func (p *Prober) NetpolAllow(ctx context.Context, t Target) Result {
	return p.netpol(ctx, CheckNetpolAllow, t)
}

// NetpolDeny connects to the port NetworkPolicy should deny. A timeout,
// reset or refusal is the passing outcome when Expect is deny; a completed
// handshake is OutcomePolicyNotEnforced. A refusal counts as blocked only
// when Target.Listening; otherwise it is OutcomeInconclusive.
func (p *Prober) NetpolDeny(ctx context.Context, t Target) Result {
	return p.netpol(ctx, CheckNetpolDeny, t)
}

// netpol compares the observed reachability of Target.Addr with Target.Expect.
// The attempt is bounded by DenyTimeout: enforcement usually drops SYNs, and a
// blocked attempt should not hold the run for its whole timeout. A ctx that
// ends sooner (the agent's scheduler gives these runs DenyTimeout) is the
// bound as it is.
func (p *Prober) netpol(ctx context.Context, c Check, t Target) Result {
	r := p.begin(c, t, t.Addr)
	r.Expected = t.Expect
	if t.Expect != VerdictAllow && t.Expect != VerdictDeny && t.Expect != VerdictUnknown {
		r.fail(OutcomeBadTarget, fmt.Errorf("expected verdict %q: want allow, deny or unknown (empty)", t.Expect))
		return r
	}
	if err := validateHostPort("target address", t.Addr); err != nil {
		r.fail(OutcomeBadTarget, err)
		return r
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > p.DenyTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.DenyTimeout)
		defer cancel()
	}

	if _, err := p.handshake(ctx, &r, t.Addr, false); err == nil {
		r.Observed = VerdictAllow
	} else {
		switch r.Outcome {
		case OutcomeConnectRefused:
			if !t.Listening {
				return refusedInconclusive(r, t)
			}
			// The port listens, so the refusal is a policy that rejects.
			r.Observed = VerdictDeny
		case OutcomeConnectTimeout, OutcomeReset, OutcomeUnreachable:
			// Policy engines drop (timeout) or reject (RST / ICMP): all are "blocked".
			r.Observed = VerdictDeny
		case OutcomeCanceled:
			return r
		default:
			return r // bad input or an unclassified error: no observation to compare
		}
	}
	blockedBy := r.Outcome
	switch {
	case t.Expect == VerdictUnknown:
		// Observe only: with no expectation there is nothing to enforce.
		r.Outcome = OutcomeExpectationUnknown
		r.Detail = fmt.Sprintf("observed %s; the expected verdict is unknown", r.Observed)
	case r.Observed == t.Expect:
		r.Outcome = OutcomeSuccess
		if r.Observed == VerdictDeny {
			r.Detail = fmt.Sprintf("blocked as expected (%s)", blockedBy)
		}
	case t.Expect == VerdictDeny:
		r.fail(OutcomePolicyNotEnforced, fmt.Errorf("connection to %s completed; NetworkPolicy should deny it", t.Addr))
	default:
		r.fail(OutcomeUnexpectedBlock, fmt.Errorf("connection to %s blocked (%s: %s); NetworkPolicy should allow it", t.Addr, blockedBy, r.Detail))
	}
	return r
}

// refusedInconclusive judges a refused connect toward a port not known to
// listen: a rejecting policy and a closed port look the same, so no verdict
// is observed. Expecting deny, the run proves nothing (OutcomeInconclusive);
// expecting allow, the port is unreachable either way, which stays the
// connect_refused failure without blaming a policy.
func refusedInconclusive(r Result, t Target) Result {
	if t.Expect == VerdictDeny {
		r.fail(OutcomeInconclusive, fmt.Errorf("connection to %s refused: a policy that rejects, or nothing listening", t.Addr))
	}
	return r
}
