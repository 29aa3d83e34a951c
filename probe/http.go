package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// readers holds the response readers of finished runs: a fresh 4 KiB buffer
// per run was a third of the bytes a probe cycle allocated.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

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

// maxHeaderBytes bounds the status line and headers of a health response.
const maxHeaderBytes = 16 << 10

// httpGet speaks HTTP/1.1 itself over the probe's own socket, rather than
// through http.Transport: the connect phase is then timed exactly like the
// tcp check's, each stamp is taken on this goroutine (no trace hooks on
// transport goroutines), and a run costs no per-connection goroutines. The
// response is still parsed by net/http.
func (p *Prober) httpGet(ctx context.Context, c Check, t Target, addr, field string) Result {
	ctx, cancel := withDefaultDeadline(ctx)
	defer cancel()
	path := t.HTTPPath
	if path == "" {
		path = DefaultHTTPPath
	}
	r := p.begin(c, t, addr)
	r.Phases = make([]PhaseDuration, 0, 4) // dns, connect, first_byte, total: one allocation, not three
	if err := validateHostPort(field, addr); err != nil {
		r.fail(OutcomeBadTarget, err)
		return r
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
		r.fail(OutcomeBadTarget, fmt.Errorf("http path %q must start with / and hold no spaces or line breaks", path))
		return r
	}
	start := p.Clock.Now()
	conn, err := p.handshake(ctx, &r, addr, true)
	if err != nil {
		return r
	}
	defer conn.Close()
	// ctx has a deadline (withDefaultDeadline), so this ends a read or write
	// in flight at the deadline as well as on cancellation: no deadline
	// timers on the socket besides.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: xosprobe\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		r.fail(classifyExchange(err, ctx.Err()), fmt.Errorf("writing request: %w", err))
		return r
	}
	wrote := p.Clock.Now()
	// The limit covers headers first; the body gets its own budget below, so a
	// peer cannot make us buffer or read without bound.
	limited := &io.LimitedReader{R: conn, N: maxHeaderBytes}
	br := readers.Get().(*bufio.Reader)
	br.Reset(limited)
	defer func() {
		br.Reset(nil) // drops the connection; the buffer stays
		readers.Put(br)
	}()
	if _, err := br.Peek(1); err != nil {
		r.fail(classifyExchange(err, ctx.Err()), fmt.Errorf("waiting for the response: %w", err))
		return r
	}
	firstByte := p.Clock.Now()
	r.addPhase(PhaseFirstByte, firstByte.Sub(wrote))

	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if limited.N == 0 {
			r.fail(OutcomeHTTPProtocol, fmt.Errorf("response headers exceed %d bytes", maxHeaderBytes))
		} else {
			r.fail(classifyExchange(err, ctx.Err()), fmt.Errorf("reading the response: %w", err))
		}
		return r
	}
	limited.N = p.MaxBody + 1 + int64(br.Buffered())
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, p.MaxBody+1))
	resp.Body.Close()
	end := p.Clock.Now()
	switch {
	case err != nil:
		r.fail(classifyExchange(err, ctx.Err()), fmt.Errorf("reading the body: %w", err))
	case n > p.MaxBody:
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
	case isCanceled(ctxErr):
		return OutcomeCanceled
	case isReset(err):
		return OutcomeReset
	case isTimeout(err) || ctxErr != nil:
		return OutcomeHTTPTimeout
	}
	return OutcomeHTTPProtocol // EOF before a response, malformed status line or headers
}
