package probe

// Explain says, for an operator reading `xosprobe check` output, what an
// outcome usually means on a mixed Windows/Linux cluster and where to look.
func (o Outcome) Explain() string {
	switch o {
	case OutcomeSuccess:
		return "passed"
	case OutcomeDNSNXDomain:
		return "the name does not exist: check the Service name and namespace; " +
			"Windows pods search only their first DNS suffix, so use the FQDN (svc.ns.svc.cluster.local)"
	case OutcomeDNSTimeout:
		return "no DNS answer in time: is the cluster DNS (CoreDNS) running, and does NetworkPolicy allow egress to it on port 53 UDP and TCP?"
	case OutcomeDNSNoAnswer:
		return "the name exists but has no IPv4 address: a headless Service with no ready endpoints, or an IPv6-only record"
	case OutcomeDNSError:
		return "the DNS server failed the query (SERVFAIL/REFUSED): look at the CoreDNS logs and its upstreams"
	case OutcomeConnectRefused:
		return "the host answered but nothing listens on that port, or a firewall rejects it: is the peer pod running and its port right?"
	case OutcomeConnectTimeout:
		return "the SYN got no answer: packets are dropped on the way — a NetworkPolicy, a host firewall, or on Windows an HNS ACL or missing route between node subnets"
	case OutcomeUnreachable:
		return "no route to the peer: node-to-node routing of pod CIDRs is broken (VXLAN/host-gw between Windows and Linux nodes, or a missing HNS network)"
	case OutcomeReset:
		return "the connection was reset: the peer aborted it or a policy rejects with RST"
	case OutcomeHTTPStatus:
		return "the peer answered with a non-2xx status: reachable, but unhealthy"
	case OutcomeHTTPTimeout:
		return "connected, but the response did not finish in time: an overloaded peer, or an MTU black hole dropping full-size packets (Windows VXLAN overlays need MTU 1450 or less)"
	case OutcomeHTTPBodyTooBig:
		return "the health endpoint sent more than expected: this port is not an xosprobe responder"
	case OutcomeHTTPProtocol:
		return "something other than an HTTP/1.1 server answered on this port, or it closed without a response"
	case OutcomePolicyNotEnforced:
		return "NetworkPolicy should deny this connection but it completed: the CNI on the source or destination node does not enforce NetworkPolicy " +
			"(Flannel on Windows enforces none; some Calico for Windows setups only partly)"
	case OutcomeUnexpectedBlock:
		return "NetworkPolicy should allow this connection but it was blocked: check the source's egress and the destination's ingress policies, " +
			"and how the CNI implements them"
	case OutcomeInconclusive:
		return "the connection was refused: a policy that rejects, or nothing listening on that port, so it proves nothing about NetworkPolicy; " +
			"aim --deny-target at a port that listens (an agent's deny port), or run check in an agent pod with no flags"
	case OutcomeExpectationUnknown:
		return "the policies that decide this traffic include kinds the evaluator cannot see (CNI policy CRDs, unreadable or ambiguous ones), " +
			"so the result is observed but not judged; `xosprobe policy explain` names them"
	case OutcomeBadTarget:
		return "the input is malformed; see the detail"
	case OutcomeCanceled:
		return "the run was canceled before it finished"
	}
	return "an unclassified error; see the detail"
}
