package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds each run; failure modes must be classified inside it.
const testTimeout = 2 * time.Second

type checkCase struct {
	name    string
	target  func(t *testing.T) Target
	want    Outcome
	phases  []Phase // phases that must be present
	finding string
}

func runCases(t *testing.T, check Check, cases []checkCase, tune ...func(*Prober)) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			for _, f := range tune {
				f(p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			start := time.Now()
			r := p.Func(check)(ctx, tc.target(t))
			elapsed := time.Since(start)

			assert.Equal(t, tc.want, r.Outcome, "detail: %s", r.Detail)
			assert.Equal(t, check, r.Check)
			assert.Equal(t, p.Clock.Name(), r.Clock)
			assert.Less(t, elapsed, testTimeout+time.Second, "check overran its deadline")
			for _, ph := range tc.phases {
				d, ok := r.Phase(ph)
				if assert.True(t, ok, "phase %s missing in %+v", ph, r.Phases) {
					assert.Positive(t, d, "phase %s", ph)
				}
			}
			if r.Outcome != OutcomeSuccess {
				assert.NotEmpty(t, r.Detail, "a failure must say why")
			}
			if !r.KernelRTT.Available() {
				assert.NotEmpty(t, r.KernelRTT.Unavailable, "an absent kernel RTT must say why")
			}
			if tc.finding != "" {
				require.Len(t, r.Findings, 1)
				assert.Equal(t, tc.finding, r.Findings[0].Code)
			} else {
				assert.Empty(t, r.Findings)
			}
		})
	}
}

func addr(a string) func(*testing.T) Target {
	return func(*testing.T) Target { return Target{Addr: a} }
}

var malformedAddrs = []string{"", "nohost", "127.0.0.1", ":80", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:http"}

func TestTCP(t *testing.T) {
	cases := []checkCase{
		{name: "connects", target: func(t *testing.T) Target { return Target{Addr: tcpServer(t, nil)} },
			want: OutcomeSuccess, phases: []Phase{PhaseConnect}},
		{name: "server hangs after accept still connects",
			target: func(t *testing.T) Target { return Target{Addr: tcpServer(t, hangAfterAccept)} },
			want:   OutcomeSuccess, phases: []Phase{PhaseConnect}},
		{name: "closed port", target: func(t *testing.T) Target { return Target{Addr: closedPort(t)} },
			want: OutcomeConnectRefused},
		{name: "unresolvable name", target: addr("no-such-peer.invalid:80"), want: OutcomeDNSNXDomain},
	}
	for _, a := range malformedAddrs {
		cases = append(cases, checkCase{name: "malformed " + a, target: addr(a), want: OutcomeBadTarget})
	}
	runCases(t, CheckTCP, cases, func(p *Prober) { p.Resolver = resolverFor(dnsServer(t, dnsZone{})) })
}

func TestTCPReportsKernelRTT(t *testing.T) {
	r := New().TCP(context.Background(), Target{Addr: tcpServer(t, nil)})
	require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
	if runtime.GOOS == "linux" {
		require.True(t, r.KernelRTT.Available(), r.KernelRTT.Unavailable)
		assert.Equal(t, "tcp_info", string(r.KernelRTT.Source))
		assert.Positive(t, r.KernelRTT.RTT)
	}
	t.Logf("kernel RTT %+v, connect %v", r.KernelRTT, r.Phases)
}

func TestTCPCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := New().TCP(ctx, Target{Addr: tcpServer(t, nil)})
	assert.Equal(t, OutcomeCanceled, r.Outcome)
}

func TestTCPDeadlinePassed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	r := New().TCP(ctx, Target{Addr: tcpServer(t, nil)})
	assert.Equal(t, OutcomeConnectTimeout, r.Outcome)
}

func okHandler(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }

func TestHTTP(t *testing.T) {
	cases := []checkCase{
		{name: "healthy", target: func(t *testing.T) Target { return Target{Addr: httpServer(t, okHandler)} },
			want: OutcomeSuccess, phases: []Phase{PhaseConnect, PhaseFirstByte, PhaseTotal}},
		{name: "host name resolved as its own phase",
			target: func(t *testing.T) Target {
				_, port, _ := net.SplitHostPort(httpServer(t, okHandler))
				return Target{Addr: "localhost:" + port}
			},
			want: OutcomeSuccess, phases: []Phase{PhaseDNS, PhaseConnect, PhaseFirstByte, PhaseTotal}},
		{name: "custom path", target: func(t *testing.T) Target {
			return Target{Addr: httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/ready" {
					w.WriteHeader(http.StatusNotFound)
				}
			}), HTTPPath: "/ready"}
		}, want: OutcomeSuccess},
		{name: "status 503", target: func(t *testing.T) Target {
			return Target{Addr: httpServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })}
		}, want: OutcomeHTTPStatus, phases: []Phase{PhaseConnect, PhaseFirstByte}},
		{name: "closed port", target: func(t *testing.T) Target { return Target{Addr: closedPort(t)} },
			want: OutcomeConnectRefused},
		{name: "hangs after accept", target: func(t *testing.T) Target { return Target{Addr: tcpServer(t, hangAfterAccept)} },
			want: OutcomeHTTPTimeout, phases: []Phase{PhaseConnect}},
		{name: "resets after request", target: func(t *testing.T) Target { return Target{Addr: tcpServer(t, resetAfterRequest)} },
			want: OutcomeReset, phases: []Phase{PhaseConnect}},
		{name: "closes without response", target: func(t *testing.T) Target {
			return Target{Addr: tcpServer(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)) })}
		}, want: OutcomeHTTPProtocol},
		{name: "speaks something else", target: func(t *testing.T) Target {
			return Target{Addr: tcpServer(t, func(c net.Conn) {
				_, _ = c.Read(make([]byte, 4096))
				_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			})}
		}, want: OutcomeHTTPProtocol},
		{name: "endless headers", target: func(t *testing.T) Target {
			return Target{Addr: tcpServer(t, func(c net.Conn) {
				_, _ = c.Read(make([]byte, 4096))
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n"))
				line := []byte("X-Filler: " + strings.Repeat("y", 1000) + "\r\n")
				for range 100 {
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			})}
		}, want: OutcomeHTTPProtocol},
		{name: "huge body", target: func(t *testing.T) Target {
			return Target{Addr: httpServer(t, func(w http.ResponseWriter, _ *http.Request) {
				chunk := []byte(strings.Repeat("x", 32<<10))
				for range 1024 { // 32 MiB, far past MaxBody
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})}
		}, want: OutcomeHTTPBodyTooBig},
		{name: "slow body", target: func(t *testing.T) Target {
			return Target{Addr: httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				for {
					if _, err := w.Write([]byte("x")); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			})}
		}, want: OutcomeHTTPTimeout},
		{name: "bad path", target: func(t *testing.T) Target { return Target{Addr: "127.0.0.1:80", HTTPPath: "healthz"} },
			want: OutcomeBadTarget},
	}
	for _, a := range malformedAddrs {
		cases = append(cases, checkCase{name: "malformed " + a, target: addr(a), want: OutcomeBadTarget})
	}
	runCases(t, CheckHTTP, cases)
}

// A run canceled while it waits for the answer ends at once, as canceled
// (not a timeout: the peer was not too slow, the caller left).
func TestHTTPCanceledWhileWaitingForTheAnswer(t *testing.T) {
	target := Target{Addr: tcpServer(t, hangAfterAccept)}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	r := New().HTTP(ctx, target)
	assert.Equal(t, OutcomeCanceled, r.Outcome, r.Detail)
	assert.Less(t, time.Since(start), testTimeout/2, "the cancel did not end the wait")
	_, connected := r.Phase(PhaseConnect)
	assert.True(t, connected, "the cancel came after the handshake")
}

// Runs share response readers: one left with buffered bytes (headers past the
// limit, a body past MaxBody) must hand nothing to the next run.
func TestHTTPRunsShareNoResponseBytes(t *testing.T) {
	filler := "X-Filler: " + strings.Repeat("y", 1000) + "\r\n"
	targets := []struct {
		addr string
		want Outcome
	}{
		{tcpServer(t, func(c net.Conn) {
			_, _ = c.Read(make([]byte, 4096))
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n" + strings.Repeat(filler, 80)))
		}), OutcomeHTTPProtocol},
		{httpServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }), OutcomeHTTPStatus},
		{httpServer(t, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("HTTP/1.1 200 OK\r\n\r\n", 400)))
		}), OutcomeHTTPBodyTooBig},
		{httpServer(t, okHandler), OutcomeSuccess},
	}
	p := New()
	p.MaxBody = 1024
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 40 {
				tg := targets[(w+i)%len(targets)]
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				r := p.HTTP(ctx, Target{Addr: tg.addr})
				cancel()
				assert.Equal(t, tg.want, r.Outcome, "run %d of worker %d toward %s: %s", i, w, tg.addr, r.Detail)
			}
		})
	}
	wg.Wait()
}

func TestServiceUsesServiceAddr(t *testing.T) {
	runCases(t, CheckService, []checkCase{
		{name: "through the VIP", target: func(t *testing.T) Target {
			return Target{Addr: closedPort(t), ServiceAddr: httpServer(t, okHandler)}
		}, want: OutcomeSuccess, phases: []Phase{PhaseConnect, PhaseFirstByte, PhaseTotal}},
		{name: "no VIP given", target: func(t *testing.T) Target { return Target{Addr: httpServer(t, okHandler)} },
			want: OutcomeBadTarget},
		{name: "VIP refuses", target: func(t *testing.T) Target { return Target{ServiceAddr: closedPort(t)} },
			want: OutcomeConnectRefused},
	})
}

func TestDNS(t *testing.T) {
	const fqdn = "web.prod.svc.cluster.local"
	full := dnsZone{names: map[string]string{fqdn + ".": "10.0.0.7", "web.prod.": "10.0.0.7"}}
	fqdnOnly := dnsZone{names: map[string]string{fqdn + ".": "10.0.0.7"}}

	type dnsCase struct {
		name           string
		system, direct dnsZone
		target         Target
		want           Outcome
		phases         []Phase
		finding        string
		noDirectServer bool
	}
	cases := []dnsCase{
		{name: "resolves both ways", system: full, direct: full, target: Target{Name: fqdn},
			want: OutcomeSuccess, phases: []Phase{PhaseResolveSystem, PhaseResolveDirect, PhaseResolveShort}},
		{name: "trailing dot", system: full, direct: full, target: Target{Name: fqdn + "."},
			want: OutcomeSuccess, phases: []Phase{PhaseResolveSystem, PhaseResolveDirect}},
		{name: "short name fails: a finding, not a failure", system: fqdnOnly, direct: fqdnOnly, target: Target{Name: fqdn},
			want: OutcomeSuccess, phases: []Phase{PhaseResolveSystem, PhaseResolveDirect}, finding: FindingShortNameFails},
		{name: "system resolver only", system: full, target: Target{Name: fqdn}, noDirectServer: true,
			want: OutcomeSuccess, phases: []Phase{PhaseResolveSystem}},
		{name: "nxdomain", system: full, direct: full, target: Target{Name: "nope.prod.svc.cluster.local"}, want: OutcomeDNSNXDomain},
		{name: "direct server nxdomain only", system: full, direct: dnsZone{}, target: Target{Name: fqdn},
			want: OutcomeDNSNXDomain, phases: []Phase{PhaseResolveSystem}},
		{name: "servfail", system: full, direct: dnsZone{rcode: dns.RcodeServerFailure}, target: Target{Name: fqdn},
			want: OutcomeDNSError, phases: []Phase{PhaseResolveSystem}},
		{name: "server never answers", system: dnsZone{silent: true}, direct: dnsZone{silent: true}, target: Target{Name: fqdn},
			want: OutcomeDNSTimeout},
		{name: "only the direct server is silent", system: full, direct: dnsZone{silent: true}, target: Target{Name: fqdn},
			want: OutcomeDNSTimeout, phases: []Phase{PhaseResolveSystem}},
		{name: "empty name", system: full, target: Target{}, want: OutcomeBadTarget, noDirectServer: true},
		{name: "name with port", system: full, target: Target{Name: "web:53"}, want: OutcomeBadTarget, noDirectServer: true},
		{name: "malformed server", system: full, target: Target{Name: fqdn, DNSServer: "10.0.0.10"}, want: OutcomeBadTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New()
			p.Resolver = resolverFor(dnsServer(t, tc.system))
			target := tc.target
			if !tc.noDirectServer && target.DNSServer == "" {
				target.DNSServer = dnsServer(t, tc.direct)
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			r := p.DNS(ctx, target)
			assert.Equal(t, tc.want, r.Outcome, "detail: %s", r.Detail)
			for _, ph := range tc.phases {
				_, ok := r.Phase(ph)
				assert.True(t, ok, "phase %s missing in %+v", ph, r.Phases)
			}
			if tc.finding != "" {
				require.Len(t, r.Findings, 1)
				assert.Equal(t, tc.finding, r.Findings[0].Code)
				assert.Contains(t, r.Findings[0].Detail, "web.prod")
			} else {
				assert.Empty(t, r.Findings)
			}
			if r.Outcome != OutcomeSuccess {
				assert.NotEmpty(t, r.Detail)
			}
		})
	}
}

func TestNetpol(t *testing.T) {
	listening := func(expect Verdict) func(*testing.T) Target {
		return func(t *testing.T) Target { return Target{Addr: tcpServer(t, nil), Expect: expect} }
	}
	// A refusal by a port known to listen stands for a policy that rejects.
	blocked := func(expect Verdict) func(*testing.T) Target {
		return func(t *testing.T) Target { return Target{Addr: closedPort(t), Expect: expect, Listening: true} }
	}
	// The same refusal toward a port nobody vouches for: maybe nothing listens.
	refused := func(expect Verdict) func(*testing.T) Target {
		return func(t *testing.T) Target { return Target{Addr: closedPort(t), Expect: expect} }
	}
	for _, check := range []Check{CheckNetpolAllow, CheckNetpolDeny} {
		t.Run(string(check), func(t *testing.T) {
			runCases(t, check, []checkCase{
				{name: "allowed and open", target: listening(VerdictAllow), want: OutcomeSuccess, phases: []Phase{PhaseConnect}},
				{name: "denied and blocked", target: blocked(VerdictDeny), want: OutcomeSuccess},
				{name: "denied but open", target: listening(VerdictDeny), want: OutcomePolicyNotEnforced, phases: []Phase{PhaseConnect}},
				{name: "allowed but blocked", target: blocked(VerdictAllow), want: OutcomeUnexpectedBlock},
				{name: "denied, refused, not known to listen", target: refused(VerdictDeny), want: OutcomeInconclusive},
				{name: "allowed, refused, not known to listen", target: refused(VerdictAllow), want: OutcomeConnectRefused},
				{name: "unknown expectation, open", target: listening(VerdictUnknown), want: OutcomeExpectationUnknown, phases: []Phase{PhaseConnect}},
				{name: "unknown expectation, blocked", target: blocked(VerdictUnknown), want: OutcomeExpectationUnknown},
				{name: "unsupported expectation", target: func(t *testing.T) Target { return Target{Addr: "127.0.0.1:1", Expect: "maybe"} }, want: OutcomeBadTarget},
				{name: "malformed address", target: func(*testing.T) Target { return Target{Addr: "x", Expect: VerdictDeny} }, want: OutcomeBadTarget},
			})
		})
	}
}

func TestNetpolRecordsVerdicts(t *testing.T) {
	tests := []struct {
		name      string
		addr      func(*testing.T) string
		listening bool
		observed  Verdict
		detail    string
	}{
		{name: "connected", addr: func(t *testing.T) string { return tcpServer(t, nil) }, observed: VerdictAllow},
		{name: "refused by a listening port", addr: closedPort, listening: true, observed: VerdictDeny,
			detail: "blocked as expected (connect_refused)"},
		// No verdict is observed, so nothing counts as a mismatch or as enforcement.
		{name: "refused, nothing known to listen", addr: closedPort, observed: VerdictUnknown,
			detail: "refused: a policy that rejects, or nothing listening"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New().NetpolDeny(context.Background(), Target{Addr: tc.addr(t), Expect: VerdictDeny, Listening: tc.listening})
			assert.Equal(t, VerdictDeny, r.Expected)
			assert.Equal(t, tc.observed, r.Observed)
			assert.Contains(t, r.Detail, tc.detail)
		})
	}
}

func TestEveryCheckHasAFunc(t *testing.T) {
	p := New()
	for _, c := range Checks {
		assert.NotNil(t, p.Func(c), c)
	}
	assert.Nil(t, p.Func("ping"))
}

func TestShortServiceName(t *testing.T) {
	for in, want := range map[string]string{
		"web.prod.svc.cluster.local": "web.prod",
		"web.prod.svc.corp.example":  "web.prod",
		"web.prod.svc":               "",
		"web.prod.pod.cluster.local": "",
		"example.com":                "",
	} {
		got, ok := shortServiceName(in)
		assert.Equal(t, want, got, in)
		assert.Equal(t, want != "", ok, in)
	}
}

func TestIPv6Targets(t *testing.T) {
	addr := ipv6Server(t, nil)
	p := New()
	for _, c := range []Check{CheckTCP, CheckNetpolAllow} {
		r := p.Func(c)(context.Background(), Target{Addr: addr, Expect: VerdictAllow})
		assert.Equal(t, OutcomeSuccess, r.Outcome, "%s: %s", c, r.Detail)
	}
	// An IPv4-mapped IPv6 address is dialed as IPv4.
	_, port, _ := net.SplitHostPort(tcpServer(t, nil))
	r := p.TCP(context.Background(), Target{Addr: "[::ffff:127.0.0.1]:" + port})
	assert.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
}
