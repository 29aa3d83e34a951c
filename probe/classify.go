package probe

import (
	"context"
	"errors"
	"net"
	"os"
)

// classifyDial maps a dial error to an outcome. ctxErr is the probe context's
// error at the time of failure: a deadline there is a timeout, a cancel is not.
func classifyDial(err error, ctxErr error) Outcome {
	switch {
	case errors.Is(ctxErr, context.Canceled):
		return OutcomeCanceled
	case isRefused(err):
		return OutcomeConnectRefused
	case isReset(err):
		return OutcomeReset
	case isUnreachable(err):
		return OutcomeUnreachable
	case isTimeout(err) || errors.Is(ctxErr, context.DeadlineExceeded):
		return OutcomeConnectTimeout
	}
	return OutcomeError
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return (errors.As(err, &ne) && ne.Timeout()) || isOSTimeout(err)
}

func isCanceled(ctxErr error) bool { return errors.Is(ctxErr, context.Canceled) }
