package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// blackholes maps blackholeAddr results to their listeners, for tests that open them up.
var blackholes = map[string]net.Listener{}

// blackholeAddr returns a loopback address whose SYNs the kernel drops: a
// socket listening with backlog 0 that never accepts, its queue filled by one
// connection. It stands in for a peer behind a dropping NetworkPolicy.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	f := os.NewFile(uintptr(fd), "blackhole")
	l, err := net.FileListener(f)
	f.Close()
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	addr := l.Addr().String()
	blackholes[addr] = l

	filler, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err, "the first connection fills the accept queue")
	t.Cleanup(func() { filler.Close() })
	return addr
}

func TestConnectTimeoutWhenSYNsAreDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r := New().TCP(ctx, Target{Addr: blackholeAddr(t)})
	assert.Equal(t, OutcomeConnectTimeout, r.Outcome, r.Detail)
}

func TestNetpolDropIsBlocked(t *testing.T) {
	p := New()
	p.DenyTimeout = 200 * time.Millisecond
	addr := blackholeAddr(t)

	start := time.Now()
	deny := p.NetpolDeny(context.Background(), Target{Addr: addr, Expect: VerdictDeny})
	assert.Equal(t, OutcomeSuccess, deny.Outcome, deny.Detail)
	assert.Equal(t, VerdictDeny, deny.Observed)
	assert.Less(t, time.Since(start), 2*time.Second, "a dropped SYN must be judged within DenyTimeout, not the run timeout")

	allow := p.NetpolAllow(context.Background(), Target{Addr: addr, Expect: VerdictAllow})
	assert.Equal(t, OutcomeUnexpectedBlock, allow.Outcome)
	assert.Contains(t, allow.Detail, string(OutcomeConnectTimeout))
}

// A run context that ends before DenyTimeout is the bound itself (the
// agent's netpol runs): a dropped SYN is judged blocked when it ends.
func TestNetpolDropIsBlockedByTheRunDeadline(t *testing.T) {
	p := New()
	p.DenyTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	deny := p.NetpolDeny(ctx, Target{Addr: blackholeAddr(t), Expect: VerdictDeny})
	assert.Equal(t, OutcomeSuccess, deny.Outcome, deny.Detail)
	assert.Equal(t, VerdictDeny, deny.Observed)
	assert.Contains(t, deny.Detail, string(OutcomeConnectTimeout))
}

func TestHTTPReportsKernelRTT(t *testing.T) {
	r := New().HTTP(context.Background(), Target{Addr: httpServer(t, okHandler)})
	require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
	assert.True(t, r.KernelRTT.Available(), r.KernelRTT.Unavailable)
}

// A connect blocked on a dropped SYN completes when the kernel retransmits
// it (about 1 s later) after the accept queue frees up, and the connect phase
// spans the wait.
func TestConnectWaitsForARetransmittedSYN(t *testing.T) {
	addr := blackholeAddr(t)
	l := blackholes[addr]
	port := netip.MustParseAddrPort(addr).Port()
	go func() {
		// Free the queue only once the probe's first SYN is out and dropped:
		// its socket sits in SYN_SENT (state 02) towards the port.
		for range 500 {
			if socketsInState(t, port, "02") > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := New().TCP(ctx, Target{Addr: addr})
	require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
	d, _ := r.Phase(PhaseConnect)
	assert.Greater(t, d, 500*time.Millisecond, "the connect phase spans the retransmitted SYN")
	assert.True(t, r.KernelRTT.Available(), r.KernelRTT.Unavailable)
}

// Probe sockets close with RST: probing leaves no TIME_WAIT behind, on
// either end, also after an http exchange the server closes first.
func TestProbesLeaveNoTimeWait(t *testing.T) {
	p := New()
	for _, c := range []struct {
		check Check
		addr  string
	}{{CheckTCP, tcpServer(t, nil)}, {CheckHTTP, httpServer(t, okHandler)}} {
		for range 20 {
			r := p.Func(c.check)(context.Background(), Target{Addr: c.addr})
			require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
		}
		timeWait := socketsInState(t, netip.MustParseAddrPort(c.addr).Port(), "06")
		assert.Zero(t, timeWait, "%s: TIME_WAIT sockets on the probed port", c.check)
	}
}

// socketsInState counts IPv4 sockets with port at either end in the given
// /proc/net/tcp state (02 SYN_SENT, 06 TIME_WAIT).
func socketsInState(t *testing.T, port uint16, state string) int {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == state && (strings.HasSuffix(f[1], suffix) || strings.HasSuffix(f[2], suffix)) {
			n++
		}
	}
	return n
}

// Connect-only probes reuse their sockets: one kept socket serves each peer
// in turn, IPv4 and IPv6 apart; a failed connect's socket is dropped; probes
// at once keep no more than maxSpareSockets.
func TestConnectOnlySocketsAreReused(t *testing.T) {
	seen := map[string]chan string{}
	var addrs []string
	for range 2 {
		ch := make(chan string, 100)
		addr := tcpServer(t, func(c net.Conn) { ch <- c.RemoteAddr().String() })
		seen[addr] = ch
		addrs = append(addrs, addr)
	}
	p := New()
	for i := range 10 {
		addr := addrs[i%2]
		r := p.TCP(context.Background(), Target{Addr: addr})
		require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
		assert.True(t, r.KernelRTT.Available(), r.KernelRTT.Unavailable)
		select {
		case <-seen[addr]:
		case <-time.After(5 * time.Second):
			t.Fatalf("probe %d: %s never saw the connection", i, addr)
		}
		assert.Len(t, p.spares.fds[0], 1, "probe %d: probes one after another share one socket", i)
	}

	r := p.TCP(context.Background(), Target{Addr: closedPort(t)})
	require.Equal(t, OutcomeConnectRefused, r.Outcome, r.Detail)
	assert.Empty(t, p.spares.fds[0], "the socket of a refused connect is closed, not kept")

	t.Run("ipv6", func(t *testing.T) {
		r := p.NetpolAllow(context.Background(), Target{Addr: ipv6Server(t, nil), Expect: VerdictAllow})
		require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
		assert.Len(t, p.spares.fds[1], 1, "an IPv6 socket is kept apart")
		assert.Empty(t, p.spares.fds[0])
	})

	var wg sync.WaitGroup
	for i := range 3 * maxSpareSockets {
		wg.Go(func() {
			r := p.TCP(context.Background(), Target{Addr: addrs[i%2]})
			assert.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, len(p.spares.fds[0]), maxSpareSockets)
	assert.NotEmpty(t, p.spares.fds[0])
}

// withConnectSlice sets how long one connect(2) waits before the probe looks
// at its context again, for one test.
func withConnectSlice(t *testing.T, d time.Duration) {
	old := connectSlice
	connectSlice = d
	t.Cleanup(func() { connectSlice = old })
}

// A connect waiting on a dropped SYN ends at the first slice after its
// context is canceled, far before its deadline, and its socket is not kept.
func TestConnectCanceledWhileWaiting(t *testing.T) {
	withConnectSlice(t, 50*time.Millisecond)
	addr := blackholeAddr(t)
	p := New()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	r := p.TCP(ctx, Target{Addr: addr})
	assert.Equal(t, OutcomeCanceled, r.Outcome, r.Detail)
	assert.Less(t, time.Since(start), 10*time.Second, "the cancel ends the connect, not the 1 min deadline")
	assert.Empty(t, p.spares.fds[0], "the socket of a canceled connect is closed, not kept")
}

// A deadline nearer than a slice bounds the connect's wait itself, and a
// socket whose wait was shortened is not kept for the next probe: with a
// 1 min slice, that is every socket here.
func TestConnectDeadlineNearerThanASlice(t *testing.T) {
	withConnectSlice(t, time.Minute)
	p := New()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := p.TCP(ctx, Target{Addr: blackholeAddr(t)})
	assert.Equal(t, OutcomeConnectTimeout, r.Outcome, r.Detail)
	assert.Less(t, time.Since(start), 10*time.Second, "the deadline ends the connect, not the 1 min slice")

	ok := p.TCP(context.Background(), Target{Addr: tcpServer(t, nil)}) // the 10 s MaxRunTime deadline
	require.Equal(t, OutcomeSuccess, ok.Outcome, ok.Detail)
	assert.Empty(t, p.spares.fds[0], "a socket whose wait was shortened to the deadline is not kept")
}
