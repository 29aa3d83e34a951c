package aggregator

// The label values the aggregator accepts. They mirror the probe package's
// constants (a test keeps them in step); the aggregator does not import
// probe because agent and aggregator share only the wire type. Anything
// else an agent sends is counted and skipped, so a buggy or hostile agent
// cannot mint label values or series.

// Checks, in the probe package's order.
var checks = []string{"dns", "tcp", "http", "service", "netpol-allow", "netpol-deny"}

// OSes a result's source or destination may have.
var oses = []string{"linux", "windows"}

// phases a result may time.
var phases = []string{"resolve_system", "resolve_direct", "resolve_short", "dns", "connect", "first_byte", "total"}

// outcomes is success and every classified failure reason. An unknown
// outcome is still a failure; it is counted under outcomeOther.
var outcomes = []string{
	"success",
	"dns_nxdomain", "dns_timeout", "dns_no_answer", "dns_error",
	"connect_refused", "connect_timeout", "unreachable", "reset",
	"http_status", "http_timeout", "http_body_too_large", "http_protocol",
	"policy_not_enforced", "unexpected_block",
	"bad_target", "canceled", "error",
	outcomeOther,
}

const outcomeOther = "other"

const (
	nChecks   = 6
	nOS       = 2
	nPairs    = nOS * nOS
	nPhases   = 7
	nOutcomes = 19
)

// Fixed-size arrays below are sized by these; fail the build if a list drifts.
var (
	_ = [1]struct{}{}[len(checks)-nChecks]
	_ = [1]struct{}{}[len(oses)-nOS]
	_ = [1]struct{}{}[len(phases)-nPhases]
	_ = [1]struct{}{}[len(outcomes)-nOutcomes]
)

func checkIndex(s string) int {
	switch s {
	case "dns":
		return 0
	case "tcp":
		return 1
	case "http":
		return 2
	case "service":
		return 3
	case "netpol-allow":
		return 4
	case "netpol-deny":
		return 5
	}
	return -1
}

func osIndex(s string) int {
	switch s {
	case "linux":
		return 0
	case "windows":
		return 1
	}
	return -1
}

func phaseIndex(s string) int {
	switch s {
	case "resolve_system":
		return 0
	case "resolve_direct":
		return 1
	case "resolve_short":
		return 2
	case "dns":
		return 3
	case "connect":
		return 4
	case "first_byte":
		return 5
	case "total":
		return 6
	}
	return -1
}

var outcomeIndexes = func() map[string]int {
	m := make(map[string]int, len(outcomes))
	for i, o := range outcomes {
		m[o] = i
	}
	return m
}()

// outcomeIndex maps unknown outcomes to outcomeOther; success is 0.
func outcomeIndex(s string) int {
	if s == "success" {
		return 0
	}
	if i, ok := outcomeIndexes[s]; ok {
		return i
	}
	return nOutcomes - 1
}

// pairIndex numbers (src, dst) OS pairs; pairNames[pairIndex] is the label.
func pairIndex(src, dst int) int { return src*nOS + dst }

var pairNames = func() []string {
	out := make([]string, nPairs)
	for s := range nOS {
		for d := range nOS {
			out[pairIndex(s, d)] = oses[s] + "->" + oses[d]
		}
	}
	return out
}()
