package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// Local peers for the table tests: every failure mode a pod can show, on loopback.

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// tcpServer accepts connections on IPv4 loopback and hands each to handle
// (nil: close at once).
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	addr, err := tcpServerOn(t, "127.0.0.1:0", handle)
	require.NoError(t, err)
	return addr
}

// ipv6Server is tcpServer on IPv6 loopback; it skips t where there is none.
func ipv6Server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	addr, err := tcpServerOn(t, "[::1]:0", handle)
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	return addr
}

// tcpServerOn is tcpServer listening on laddr.
func tcpServerOn(t *testing.T, laddr string, handle func(net.Conn)) (string, error) {
	l, err := net.Listen("tcp", laddr)
	if err != nil {
		return "", err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if handle != nil {
					handle(c)
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String(), nil
}

// hangAfterAccept never answers; the handler ends when the test closes the conn.
func hangAfterAccept(c net.Conn) { blockUntilClosed(c) }

func blockUntilClosed(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// resetAfterRequest reads the request then aborts the connection with RST,
// once the prober is surely waiting for the response: under Wine a reset
// that arrives before the read is posted reads as EOF (17 of 600 runs
// without the wait, 0 of 600 with it).
func resetAfterRequest(c net.Conn) {
	_, _ = c.Read(make([]byte, 4096))
	time.Sleep(50 * time.Millisecond)
	_ = c.(*net.TCPConn).SetLinger(0)
}

func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// dnsZone answers A queries for names (FQDN with trailing dot) and NXDOMAIN otherwise.
type dnsZone struct {
	names  map[string]string
	rcode  int  // when nonzero, every answer carries this rcode
	silent bool // never answer
}

func (z dnsZone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	if z.silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(q)
	switch ip, ok := z.names[q.Question[0].Name]; {
	case z.rcode != 0:
		m.Rcode = z.rcode
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Question[0].Qtype == dns.TypeA:
		rr, _ := dns.NewRR(q.Question[0].Name + " 5 IN A " + ip)
		m.Answer = append(m.Answer, rr)
	}
	_ = w.WriteMsg(m)
}

// dnsServer serves z on a loopback port over TCP, and over UDP on the same
// port where the OS lets Go open UDP sockets (Wine 8 does not).
func dnsServer(t *testing.T, z dnsZone) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serve(t, &dns.Server{Listener: l, Handler: z})
	if pc, err := net.ListenPacket("udp", l.Addr().String()); err == nil {
		serve(t, &dns.Server{PacketConn: pc, Handler: z})
	} else {
		t.Logf("no UDP DNS server (%v): TCP only", err)
	}
	return l.Addr().String()
}

func serve(t *testing.T, s *dns.Server) {
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
}

// resolverFor is a system-resolver stand-in that sends every query to server
// over TCP (Go's resolver speaks stream framing on a non-packet conn).
func resolverFor(server string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", server)
	}}
}
