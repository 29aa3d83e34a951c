package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"

	"github.com/xosprobe/xosprobe/probe/clock"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// HTTP GETs the peer pod's health endpoint (Target.Addr + Target.HTTPPath) on
// a fresh connection. Phases: dns (host names only), connect, first_byte
// (request written to first response byte), total.
func (p *Prober) HTTP(ctx context.Context, t Target) Result {
	return p.httpGet(ctx, CheckHTTP, t, t.Addr, "target address")
}

// Service is the HTTP check through the probe Service's VIP
// (Target.ServiceAddr): the TCP handshake and the GET both cross the Service
// data path (kube-proxy on Linux, HNS load balancers on Windows).
func (p *Prober) Service(ctx context.Context, t Target) Result {
	return p.httpGet(ctx, CheckService, t, t.ServiceAddr, "service address")
}

// httpStamps collects httptrace hook times. Hooks can run on transport
// goroutines, so every access takes the lock.
type httpStamps struct {
	mu                                  sync.Mutex
	clk                                 clock.Clock
	dnsStart, dnsDone                   clock.Instant
	connectStart, connectDone, wroteReq clock.Instant
	firstByte                           clock.Instant
	connectErr                          error
	readRTT                             func(net.Conn) kernelrtt.Sample
	rtt                                 *kernelrtt.Sample
}

func (s *httpStamps) trace() *httptrace.ClientTrace {
	stamp := func(at *clock.Instant) {
		now := s.clk.Now()
		s.mu.Lock()
		*at = now
		s.mu.Unlock()
	}
	return &httptrace.ClientTrace{
		DNSStart:     func(httptrace.DNSStartInfo) { stamp(&s.dnsStart) },
		DNSDone:      func(httptrace.DNSDoneInfo) { stamp(&s.dnsDone) },
		ConnectStart: func(string, string) { stamp(&s.connectStart) },
		ConnectDone: func(_, _ string, err error) {
			now := s.clk.Now()
			s.mu.Lock()
			s.connectDone, s.connectErr = now, err
			s.mu.Unlock()
		},
		// Read the RTT here: with keep-alives off the socket is gone once the body is read.
		GotConn: func(info httptrace.GotConnInfo) {
			rtt := s.readRTT(info.Conn)
			s.mu.Lock()
			s.rtt = &rtt
			s.mu.Unlock()
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { stamp(&s.wroteReq) },
		GotFirstResponseByte: func() { stamp(&s.firstByte) },
	}
}

func (p *Prober) httpGet(ctx context.Context, c Check, t Target, addr, field string) Result {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	path := t.HTTPPath
	if path == "" {
		path = DefaultHTTPPath
	}
	r := p.begin(c, t, addr)
	if err := validateHostPort(field, addr); err != nil {
		r.fail(OutcomeBadTarget, err)
		return r
	}
	if !strings.HasPrefix(path, "/") {
		r.fail(OutcomeBadTarget, fmt.Errorf("http path %q must start with /", path))
		return r
	}
	stamps := &httpStamps{clk: p.Clock, readRTT: p.connRTT}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, stamps.trace()),
		http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		r.fail(OutcomeBadTarget, err)
		return r
	}
	req.Header.Set("User-Agent", "xosprobe")

	start := p.Clock.Now()
	resp, err := p.transport().RoundTrip(req)
	var bodyErr error
	var tooBig bool
	if err == nil {
		// Read at most MaxBody+1 bytes: enough to tell "too large" without
		// letting a peer make us read without bound.
		n, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, p.MaxBody+1))
		bodyErr, tooBig = rerr, n > p.MaxBody
		resp.Body.Close()
	}
	end := p.Clock.Now()

	stamps.mu.Lock()
	defer stamps.mu.Unlock()
	if stamps.dnsDone != 0 {
		r.addPhase(PhaseDNS, stamps.dnsDone.Sub(stamps.dnsStart))
	}
	connected := stamps.connectDone != 0 && stamps.connectErr == nil
	if connected {
		r.addPhase(PhaseConnect, stamps.connectDone.Sub(stamps.connectStart))
	}
	if stamps.rtt != nil {
		r.KernelRTT = *stamps.rtt
	}

	switch {
	case err != nil && !connected:
		dialErr := err
		if stamps.connectErr != nil {
			dialErr = stamps.connectErr
		}
		var de *net.DNSError
		if errors.As(err, &de) {
			r.fail(classifyResolve(err, ctx.Err()), err)
		} else {
			r.fail(classifyDial(dialErr, ctx.Err()), err)
		}
		return r
	case err != nil:
		r.fail(classifyExchange(err, ctx.Err()), err)
		return r
	}
	if stamps.firstByte != 0 && stamps.wroteReq != 0 {
		r.addPhase(PhaseFirstByte, stamps.firstByte.Sub(stamps.wroteReq))
	}
	switch {
	case bodyErr != nil:
		r.fail(classifyExchange(bodyErr, ctx.Err()), fmt.Errorf("reading body: %w", bodyErr))
	case tooBig:
		r.fail(OutcomeHTTPBodyTooBig, fmt.Errorf("health body exceeds %d bytes", p.MaxBody))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		r.fail(OutcomeHTTPStatus, fmt.Errorf("status %s", resp.Status))
	default:
		r.addPhase(PhaseTotal, end.Sub(start))
	}
	return r
}

// classifyExchange maps an error after the connection was established.
func classifyExchange(err, ctxErr error) Outcome {
	switch {
	case errors.Is(ctxErr, context.Canceled):
		return OutcomeCanceled
	case isReset(err):
		return OutcomeReset
	case isTimeout(err) || errors.Is(ctxErr, context.DeadlineExceeded):
		return OutcomeHTTPTimeout
	}
	return OutcomeHTTPProtocol // EOF before a response, malformed status line or headers
}

// transport returns the shared no-keep-alive transport: every request dials a
// fresh connection, so connect is measured on each run and no idle sockets pile up.
func (p *Prober) transport() *http.Transport {
	p.transportOnce.Do(func() {
		p.httpTransport = &http.Transport{
			DialContext:            p.Dialer.DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 16 << 10,
			TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
			Proxy:                  nil,                                                    // never through HTTP_PROXY: we measure the pod path
		}
	})
	return p.httpTransport
}
