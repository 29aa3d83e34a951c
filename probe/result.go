// Package probe implements the six connectivity checks xosprobe runs between pods:
// dns, tcp, http, service, netpol-allow and netpol-deny.
//
// Every check is a Func returning a structured Result: an Outcome (success or a
// classified failure reason), per-phase durations measured with the project's
// clock (QueryPerformanceCounter on Windows), and the kernel's smoothed RTT when
// the socket exposes it. The package knows nothing of Kubernetes or Prometheus so
// the same functions serve the agent, `xosprobe check` and tests.
package probe

import (
	"time"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// Check names one of the six steps. The values are metric label values.
type Check string

const (
	CheckDNS         Check = "dns"
	CheckTCP         Check = "tcp"
	CheckHTTP        Check = "http"
	CheckService     Check = "service"
	CheckNetpolAllow Check = "netpol-allow"
	CheckNetpolDeny  Check = "netpol-deny"
)

// Checks lists the six steps in the order they run.
var Checks = []Check{CheckDNS, CheckTCP, CheckHTTP, CheckService, CheckNetpolAllow, CheckNetpolDeny}

// Outcome is success or a classified failure reason. The values are the
// `result` label of xosprobe_probe_total.
type Outcome string

const (
	OutcomeSuccess Outcome = "success"

	OutcomeDNSNXDomain Outcome = "dns_nxdomain" // the name does not exist
	OutcomeDNSTimeout  Outcome = "dns_timeout"  // no answer before the deadline
	OutcomeDNSNoAnswer Outcome = "dns_no_answer"
	OutcomeDNSError    Outcome = "dns_error" // SERVFAIL, REFUSED, malformed answer

	OutcomeConnectRefused Outcome = "connect_refused"
	OutcomeConnectTimeout Outcome = "connect_timeout"
	OutcomeUnreachable    Outcome = "unreachable" // no route to host or network
	OutcomeReset          Outcome = "reset"

	OutcomeHTTPStatus        Outcome = "http_status"  // a response, but not 2xx
	OutcomeHTTPTimeout       Outcome = "http_timeout" // connected, then the response did not finish in time
	OutcomeHTTPBodyTooBig    Outcome = "http_body_too_large"
	OutcomeHTTPProtocol      Outcome = "http_protocol" // the peer did not speak HTTP/1.1
	OutcomePolicyNotEnforced Outcome = "policy_not_enforced"
	OutcomeUnexpectedBlock   Outcome = "unexpected_block"
	// OutcomeInconclusive: a netpol-deny connect was refused by a port not
	// known to listen: a policy that rejects, or nothing listening. Neither
	// a pass nor a failure; it proves nothing about enforcement.
	OutcomeInconclusive Outcome = "inconclusive"
	// OutcomeExpectationUnknown: a netpol check ran without an expected
	// verdict (VerdictUnknown: policies decide it that the evaluator cannot
	// see); Observed says what happened, nothing is judged.
	OutcomeExpectationUnknown Outcome = "expectation_unknown"

	OutcomeBadTarget Outcome = "bad_target" // the Target lacks or malforms what the check needs
	OutcomeCanceled  Outcome = "canceled"   // the caller canceled the run
	OutcomeError     Outcome = "error"      // anything not classified above; see Result.Detail
)

// Phase names a timed part of a check. The values are the `phase` label.
type Phase string

const (
	PhaseResolveSystem Phase = "resolve_system" // the OS resolver (GetAddrInfoW on Windows)
	PhaseResolveDirect Phase = "resolve_direct" // one query straight to the cluster DNS server
	PhaseResolveShort  Phase = "resolve_short"  // the `svc.ns` form through the OS resolver
	PhaseDNS           Phase = "dns"            // name lookup inside the HTTP request
	PhaseConnect       Phase = "connect"        // TCP handshake: one round trip
	PhaseFirstByte     Phase = "first_byte"     // request written to first response byte: one round trip plus server time
	PhaseTotal         Phase = "total"          // start to body read
)

// Verdict is a NetworkPolicy decision: expected (from the evaluator) or observed.
type Verdict string

const (
	// VerdictUnknown, as an expectation, means the policies that decide the
	// traffic cannot all be seen; as an observation, that none was made.
	VerdictUnknown Verdict = ""
	VerdictAllow   Verdict = "allow"
	VerdictDeny    Verdict = "deny"
)

// Endpoint identifies one side of a probe. OS is "linux" or "windows".
type Endpoint struct {
	Pod  string `json:"pod,omitempty"`
	Node string `json:"node,omitempty"`
	OS   string `json:"os,omitempty"`
}

// Target is what a check is pointed at. Each check reads only the fields it
// needs and fails with OutcomeBadTarget when one is missing or malformed.
type Target struct {
	Src Endpoint `json:"src"`
	Dst Endpoint `json:"dst"`

	// Addr is host:port of the peer pod: tcp, http and the netpol checks dial it.
	Addr string `json:"addr,omitempty"`
	// HTTPPath is the health path GET by http and service; "/healthz" when empty.
	HTTPPath string `json:"httpPath,omitempty"`
	// Name is the FQDN the dns check resolves (svc.ns.svc.cluster.local).
	Name string `json:"name,omitempty"`
	// DNSServer is host:port of the cluster DNS server for the direct query.
	DNSServer string `json:"dnsServer,omitempty"`
	// ServiceAddr is VIP:port of the probe Service.
	ServiceAddr string `json:"serviceAddr,omitempty"`
	// Expect is the NetworkPolicy verdict the evaluator predicts for Addr.
	Expect Verdict `json:"expect,omitempty"`
	// Listening says a server is known to listen on Addr (an agent's
	// responder serves it), so a refused connect there is a policy that
	// rejects. Toward any other address a refusal may just be a closed port:
	// the netpol checks call it inconclusive, never enforced.
	Listening bool `json:"listening,omitempty"`
}

// PhaseDuration is one timed phase of a check.
type PhaseDuration struct {
	Phase    Phase         `json:"phase"`
	Duration time.Duration `json:"ns"`
}

// Finding is something worth telling the operator that does not fail the check,
// such as a short name that only resolves in its FQDN form.
type Finding struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// FindingShortNameFails: `svc.ns` does not resolve though the FQDN does — the
// classic Windows pod symptom (only the first DNS suffix is searched).
const FindingShortNameFails = "short_name_fails"

// Result is what one run of one check produced.
type Result struct {
	Check   Check     `json:"check"`
	Src     Endpoint  `json:"src"`
	Dst     Endpoint  `json:"dst"`
	Addr    string    `json:"addr,omitempty"` // what was dialed or resolved
	Start   time.Time `json:"start"`          // wall clock, for ordering and display only
	Outcome Outcome   `json:"outcome"`
	// Detail is the underlying error text for humans; never parsed.
	Detail string          `json:"detail,omitempty"`
	Phases []PhaseDuration `json:"phases,omitempty"`
	// KernelRTT is the socket's smoothed RTT after the handshake, with its source
	// or the reason it is unavailable.
	KernelRTT kernelrtt.Sample `json:"kernelRTT"`
	// Clock names the clock that timed the phases ("monotonic", "qpc").
	Clock    string    `json:"clock"`
	Findings []Finding `json:"findings,omitempty"`
	// Expected and Observed are set by the netpol checks.
	Expected Verdict `json:"expected,omitempty"`
	Observed Verdict `json:"observed,omitempty"`
}

// Succeeded reports whether the outcome is success.
func (r Result) Succeeded() bool { return r.Outcome == OutcomeSuccess }

// Phase returns the duration of phase p and whether it was measured.
func (r Result) Phase(p Phase) (time.Duration, bool) {
	for _, pd := range r.Phases {
		if pd.Phase == p {
			return pd.Duration, true
		}
	}
	return 0, false
}
