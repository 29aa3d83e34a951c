package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// DNS resolves Target.Name through the system resolver and, when
// Target.DNSServer is set, by one direct A query to that server, timing both.
// For a cluster name (svc.ns.svc.<domain>) it also tries the short `svc.ns`
// form through the system resolver: when that fails but the FQDN works the
// check still passes and carries FindingShortNameFails — the Windows
// single-suffix symptom.
func (p *Prober) DNS(ctx context.Context, t Target) Result {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	r := p.begin(CheckDNS, t, t.Name)
	name := strings.TrimSuffix(t.Name, ".")
	if name == "" || strings.ContainsAny(name, " :/") {
		r.fail(OutcomeBadTarget, fmt.Errorf("dns name %q: want a host name like svc.ns.svc.cluster.local", t.Name))
		return r
	}
	if t.DNSServer != "" {
		if err := validateHostPort("dns server", t.DNSServer); err != nil {
			r.fail(OutcomeBadTarget, err)
			return r
		}
	}

	var failures []string
	systemErr := p.resolveSystem(ctx, &r, PhaseResolveSystem, t.Name)
	if systemErr != nil {
		r.fail(classifyResolve(systemErr, ctx.Err()), nil)
		failures = append(failures, "system resolver: "+systemErr.Error())
	}
	if short, ok := shortServiceName(name); ok && systemErr == nil {
		// Tried before the direct query so a slow server cannot starve it; a
		// failure caused by our own deadline says nothing about the name.
		if err := p.resolveSystem(ctx, &r, PhaseResolveShort, short); err != nil && ctx.Err() == nil {
			r.Findings = append(r.Findings, Finding{
				Code: FindingShortNameFails,
				Detail: fmt.Sprintf("%q resolves but %q does not (%v): "+
					"Windows pods search only their first DNS suffix; use the FQDN", name, short, err),
			})
		}
	}
	if t.DNSServer != "" {
		if o, err := p.resolveDirect(ctx, &r, name, t.DNSServer); err != nil {
			if r.Outcome == OutcomeSuccess {
				r.Outcome = o
			}
			failures = append(failures, "direct query to "+t.DNSServer+": "+err.Error())
		}
	}
	r.Detail = strings.Join(failures, "; ")
	return r
}

func (p *Prober) resolveSystem(ctx context.Context, r *Result, ph Phase, name string) error {
	start := p.Clock.Now()
	addrs, err := p.resolver().LookupHost(ctx, name)
	elapsed := p.Clock.Now().Sub(start)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true}
	}
	if err != nil {
		return err
	}
	r.addPhase(ph, elapsed)
	return nil
}

// resolveDirect sends one A query for name to server over UDP, retrying over
// TCP when the answer is truncated or no UDP socket can be made (Wine lacks
// the SIO_UDP_NETRESET ioctl Go sets on every Windows UDP socket).
func (p *Prober) resolveDirect(ctx context.Context, r *Result, name, server string) (Outcome, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.RecursionDesired = true

	start := p.Clock.Now()
	in, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, m, server)
	var oe *net.OpError
	if (err == nil && in.Truncated) || (errors.As(err, &oe) && oe.Op == "dial") {
		in, _, err = (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, m, server)
	}
	elapsed := p.Clock.Now().Sub(start)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return OutcomeCanceled, err
		case isTimeout(err) || ctx.Err() != nil:
			return OutcomeDNSTimeout, err
		case isRefused(err):
			// ICMP port unreachable: nothing listens on the DNS port.
			return OutcomeDNSTimeout, fmt.Errorf("no DNS server listening: %w", err)
		}
		return OutcomeDNSError, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return OutcomeDNSNXDomain, fmt.Errorf("%s: NXDOMAIN", name)
	default:
		return OutcomeDNSError, fmt.Errorf("%s: rcode %s", name, dns.RcodeToString[in.Rcode])
	}
	for _, rr := range in.Answer {
		if _, ok := rr.(*dns.A); ok {
			r.addPhase(PhaseResolveDirect, elapsed)
			return OutcomeSuccess, nil
		}
	}
	return OutcomeDNSNoAnswer, fmt.Errorf("%s: no A record in the answer", name)
}

// classifyResolve maps a system resolver error to an outcome.
func classifyResolve(err, ctxErr error) Outcome {
	var de *net.DNSError
	switch {
	case errors.Is(ctxErr, context.Canceled):
		return OutcomeCanceled
	case errors.As(err, &de) && de.IsNotFound:
		return OutcomeDNSNXDomain
	case isTimeout(err) || errors.Is(ctxErr, context.DeadlineExceeded):
		return OutcomeDNSTimeout
	}
	return OutcomeDNSError
}

// shortServiceName returns "svc.ns" for "svc.ns.svc.<cluster domain>".
func shortServiceName(fqdn string) (string, bool) {
	labels := strings.Split(fqdn, ".")
	if len(labels) < 4 || labels[2] != "svc" || labels[0] == "" || labels[1] == "" {
		return "", false
	}
	return labels[0] + "." + labels[1], true
}
