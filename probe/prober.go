package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/xosprobe/xosprobe/probe/clock"
	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// Func runs one check once. It never blocks past ctx's deadline (on Linux a
// connect's wait by up to a kernel tick) and never returns a zero Result:
// failures are classified in Result.Outcome.
type Func func(ctx context.Context, t Target) Result

// Prober holds the seams the checks share. The zero value is not usable; call New.
type Prober struct {
	// Clock times every phase.
	Clock clock.Clock
	// Resolver is the "system" resolver of the dns check. nil means
	// net.DefaultResolver, which is GetAddrInfoW on Windows.
	Resolver *net.Resolver
	// Dialer dials TCP. Its Timeout is ignored: deadlines come from ctx.
	Dialer net.Dialer
	// KernelRTT reads the kernel's RTT of a connected socket from its
	// descriptor: TCP_INFO / SIO_TCP_INFO, one syscall per probe.
	KernelRTT func(fd uintptr) kernelrtt.Sample
	// RTTCollector, when set, supplies the RTT of the probe's own connect
	// without a syscall (the eBPF collector, Linux); KernelRTT answers for
	// the connections it has no reading of.
	RTTCollector RTTCollector
	// DenyTimeout bounds the connect attempt of the netpol checks: a blocked
	// port usually drops SYNs, so waiting the whole run timeout wastes it.
	DenyTimeout time.Duration
	// MaxBody is how much of a health response body is read; beyond it the
	// check fails with OutcomeHTTPBodyTooBig instead of reading on.
	MaxBody int64

	spares spareSockets // sockets of finished connect-only probes, for the next (Linux)
}

// RTTCollector gathers handshake RTTs off the probe's path, so a probe looks
// its RTT up instead of asking the socket.
type RTTCollector interface {
	// Mark is read just before connect(2).
	Mark() uint64
	// Lookup returns the RTT of the connection to remote whose handshake
	// completed after mark, or false when it has none or cannot tell two
	// connections apart.
	Lookup(remote netip.AddrPort, mark uint64) (kernelrtt.Sample, bool)
}

// Defaults for New.
const (
	DefaultDenyTimeout = time.Second
	DefaultMaxBody     = 64 << 10
	DefaultHTTPPath    = "/healthz"
)

// New returns a Prober using this OS's probe clock and the kernel's socket RTT.
func New() *Prober {
	return &Prober{
		Clock: clock.Default(),
		// Probe connections live for one exchange: keep-alive setup would cost
		// four setsockopt calls per probe for nothing.
		Dialer:      net.Dialer{KeepAlive: -1},
		KernelRTT:   kernelrtt.ReadFD,
		DenyTimeout: DefaultDenyTimeout,
		MaxBody:     DefaultMaxBody,
	}
}

// Func returns the function implementing check c, or nil for an unknown check.
func (p *Prober) Func(c Check) Func {
	switch c {
	case CheckDNS:
		return p.DNS
	case CheckTCP:
		return p.TCP
	case CheckHTTP:
		return p.HTTP
	case CheckService:
		return p.Service
	case CheckNetpolAllow:
		return p.NetpolAllow
	case CheckNetpolDeny:
		return p.NetpolDeny
	}
	return nil
}

// begin starts a Result for check c against t.
func (p *Prober) begin(c Check, t Target, addr string) Result {
	return Result{
		Check: c, Src: t.Src, Dst: t.Dst, Addr: addr,
		Start:     time.Now(),
		Outcome:   OutcomeSuccess,
		Clock:     p.Clock.Name(),
		KernelRTT: kernelrtt.Sample{Unavailable: "no TCP connection in this check"},
	}
}

func (r *Result) fail(o Outcome, err error) {
	r.Outcome = o
	if err != nil {
		r.Detail = err.Error()
	}
}

func (r *Result) addPhase(ph Phase, d time.Duration) {
	r.Phases = append(r.Phases, PhaseDuration{Phase: ph, Duration: d})
}

// validateHostPort checks addr is host:port with a numeric port in range.
func validateHostPort(field, addr string) error {
	if addr == "" {
		return fmt.Errorf("%s is empty", field)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", field, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%s %q: empty host", field, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s %q: port must be 1-65535", field, addr)
	}
	return nil
}

// MaxRunTime bounds a check whose context has no deadline, so no check hangs.
const MaxRunTime = 10 * time.Second

func withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, MaxRunTime)
}

func (p *Prober) resolver() *net.Resolver {
	if p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}
