//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
	"github.com/xosprobe/xosprobe/test/nfqueue"
)

func TestResolveCgroup(t *testing.T) {
	const hostMounts = `25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	const hybrid = `41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	// A container without a cgroup namespace: the runtime bind-mounts its subtree.
	const bindMounted = `900 800 0:30 /kubepods/burstable/pod1/cri-abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup ro
`
	const spaced = `41 31 0:38 / /mnt/cg\040two rw,relatime - cgroup2 cgroup2 rw
`
	for _, tc := range []struct {
		name, cgroup, mounts, want string
		err                        error
	}{
		{"systemd unit", "0::/system.slice/xosprobe.service\n", hostMounts, "/sys/fs/cgroup/system.slice/xosprobe.service", nil},
		{"pod with cgroupns", "0::/\n", hostMounts, "/sys/fs/cgroup", nil},
		{"hybrid", "4:memory:/x\n0::/user.slice\n", hybrid, "/sys/fs/cgroup/unified/user.slice", nil},
		{"pod without cgroupns", "0::/kubepods/burstable/pod1/cri-abc\n", bindMounted, "/sys/fs/cgroup", nil},
		{"escaped mount point", "0::/a\n", spaced, "/mnt/cg two/a", nil},
		{"cgroup v1 only", "4:memory:/x\n", hostMounts, "", ErrNotSupported},
		{"no cgroup2 mount", "0::/a\n", "25 30 0:22 / /sys rw - sysfs sysfs rw\n", "", ErrNotSupported},
		{"outside the mount", "0::/other\n", bindMounted, "", ErrNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveCgroup([]byte(tc.cgroup), []byte(tc.mounts))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestMissingCaps(t *testing.T) {
	bit := func(cs ...int) uint64 {
		var m uint64
		for _, c := range cs {
			m |= 1 << c
		}
		return m
	}
	assert.Empty(t, missingCaps(bit(unix.CAP_BPF, unix.CAP_NET_ADMIN)))
	assert.Empty(t, missingCaps(bit(unix.CAP_SYS_ADMIN)))
	assert.Equal(t, []string{"CAP_NET_ADMIN"}, missingCaps(bit(unix.CAP_BPF, unix.CAP_PERFMON)))
	assert.Equal(t, []string{"CAP_BPF", "CAP_NET_ADMIN"}, missingCaps(0))
}

func TestOpenRefusesBadOptions(t *testing.T) {
	_, err := Open(Options{RingBytes: 3000})
	assert.ErrorContains(t, err, "power of two")
	_, err = Open(Options{Cgroup: t.TempDir()})
	assert.ErrorIs(t, err, ErrNotSupported, "a directory that is no cgroup v2")
}

// The collector's RTT is the kernel's srtt at the handshake: the figure
// `ss -ti` shows for the same connection (tcpi_rtt = srtt>>3 µs), on a veth
// between two namespaces, with and without a 5 ms NFQUEUE hold on the path.
func TestRTTMatchesSS(t *testing.T) {
	requireRoot(t)
	enterCgroup(t)
	c, err := Open(Options{})
	require.NoError(t, err, "the test cgroup is the process's own")
	defer c.Close()
	np := newNetPair(t)
	srv := listenIn(t, np.b, np.ipB)

	const conns = 20
	compare := func(t *testing.T, minRTT time.Duration) {
		var worst float64
		var rtts []time.Duration
		for range conns {
			fd, conn, ok, err := probeConnect(np.a, c, srv.addr())
			require.NoError(t, err)
			require.True(t, ok, "no record for the probe's connection: %+v", c.Stats())
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			require.NoError(t, err)
			info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			require.NoError(t, err)
			ss, out, err := ssRTT(np.a, conn.Local, conn.Remote)
			unix.Close(fd)
			require.NoError(t, err)

			assert.Equal(t, cookie, conn.Cookie, "the record is this socket's")
			assert.Equal(t, srv.addr(), conn.Remote)
			assert.Equal(t, np.ipA, conn.Local.Addr())
			assert.Equal(t, time.Duration(info.Rtt)*time.Microsecond, conn.SRTT, "TCP_INFO tcpi_rtt")
			dev := math.Abs(float64(conn.SRTT-ss)) / float64(ss)
			worst = max(worst, dev)
			assert.LessOrEqual(t, dev, 0.05, "collector %v vs ss %v (%s)", conn.SRTT, ss, strings.TrimSpace(out))
			assert.GreaterOrEqual(t, conn.SRTT, minRTT)
			rtts = append(rtts, conn.SRTT)
			s := conn.Sample()
			assert.Equal(t, kernelrtt.SourceEBPF, s.Source)
		}
		t.Logf("%d connections: RTTs %v; worst deviation from ss: %.2f%%", conns, rtts, 100*worst)
	}
	t.Run("veth", func(t *testing.T) { compare(t, time.Microsecond) })
	t.Run("nfqueue_5ms", func(t *testing.T) {
		const queue = 7
		d, err := nfqueue.Start(np.b, queue, 5*time.Millisecond)
		require.NoError(t, err)
		defer func() { assert.NoError(t, d.Close()) }()
		np.iptablesB(t, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", strconv.Itoa(int(srv.addr().Port())),
			"-j", "NFQUEUE", "--queue-num", strconv.Itoa(queue), "--queue-bypass")
		compare(t, 5*time.Millisecond)
		assert.Positive(t, d.Held(), "the delayer held packets")
	})
	s := c.Stats()
	t.Logf("stats: %+v", s)
	assert.Zero(t, s.Lost)
	assert.Zero(t, s.Ambiguous)
}

// Sockets of processes outside the observed cgroup never reach the program,
// even to the same server; the server's own accepted sockets (passive
// handshakes, inside the cgroup) are not recorded either.
func TestOnlyTheAgentsSockets(t *testing.T) {
	requireRoot(t)
	cg := enterCgroup(t)
	c, err := Open(Options{})
	require.NoError(t, err)
	defer c.Close()
	np := newNetPair(t)
	srv := listenIn(t, np.b, np.ipB) // in the agent's cgroup: its accepts are passive handshakes

	before := c.Stats().Events
	const foreign = 25
	out, err := helper(t, "connect", cg.home, "N="+strconv.Itoa(foreign), "ADDR="+srv.addr().String(), "NETNS="+np.a).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "ok", strings.TrimSpace(string(out)))
	waitAccepted(t, srv, foreign)
	after := c.Stats()
	assert.Equal(t, before, after.Events, "events from a process of another cgroup")
	assert.Zero(t, after.Pending)

	// The agent's own connection to the same server is seen, once.
	fd, conn, ok, err := probeConnect(np.a, c, srv.addr())
	require.NoError(t, err)
	unix.Close(fd)
	require.True(t, ok)
	waitAccepted(t, srv, foreign+1)
	assert.Equal(t, before+1, c.Stats().Events, "exactly the agent's active handshake")
	assert.Equal(t, srv.addr(), conn.Remote)
}

func waitAccepted(t *testing.T, s *server, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) >= n
	}, 5*time.Second, 5*time.Millisecond)
}

// Lookup takes the record of the connection made after the mark; one that
// completed before it, or a second candidate, is not taken for it.
func TestLookupMarks(t *testing.T) {
	requireRoot(t)
	enterCgroup(t)
	c, err := Open(Options{})
	require.NoError(t, err)
	defer c.Close()
	np := newNetPair(t)
	srv := listenIn(t, np.b, np.ipB)

	dial := func() int {
		var fd int
		require.NoError(t, nfqueue.InNetns(np.a, func() (err error) {
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
				return err
			}
			return unix.Connect(fd, &unix.SockaddrInet4{Addr: srv.addr().Addr().As4(), Port: int(srv.addr().Port())})
		}))
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}

	dial() // before the mark: must not be taken for the next connection
	mark := c.Mark()
	_, ok := c.Lookup(srv.addr(), mark)
	assert.False(t, ok, "no connection since the mark")

	mark = c.Mark()
	dial()
	dial()
	_, ok = c.Lookup(srv.addr(), mark)
	assert.False(t, ok, "two candidates: refuse rather than guess")

	mark = c.Mark()
	fd := dial()
	s, ok := c.Lookup(netip.AddrPortFrom(netip.MustParseAddr("::ffff:"+np.ipB.String()), srv.addr().Port()), mark)
	require.True(t, ok, "an IPv4-mapped remote finds the IPv4 record")
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(info.Rtt)*time.Microsecond, s.RTT)
	_, ok = c.Lookup(srv.addr(), mark)
	assert.False(t, ok, "a record is taken once")

	st := c.Stats()
	assert.EqualValues(t, 1, st.Matched)
	assert.EqualValues(t, 1, st.Ambiguous)
	assert.EqualValues(t, 2, st.Missed)
	require.NoError(t, c.Close())
	_, ok = c.Lookup(srv.addr(), 0)
	assert.False(t, ok, "closed")
	assert.Zero(t, c.Mark())
}

// Open explains what is missing. The helper runs under reduced capability
// sets: setpriv drops them from the bounding set (root's permitted set follows
// it at exec) or, for a non-root user, grants exactly the ambient ones. The
// "raw" column loads and attaches without Open's preflight, to show the
// kernel itself enforces what the preflight reports.
func TestOpenWithoutPrivileges(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	cg := enterCgroup(t)
	nonRoot := []string{"--reuid", "65532", "--regid", "65532", "--clear-groups"}
	for _, tc := range []struct {
		name      string
		setpriv   []string
		want, raw string
	}{
		{"root with only CAP_BPF and CAP_NET_ADMIN", []string{"--bounding-set", "-all,+bpf,+net_admin"}, "ok", "ok"},
		// The ebpf overlay's container: root, drop ALL + add BPF and NET_ADMIN,
		// allowPrivilegeEscalation false (no_new_privs).
		{"as the ebpf overlay runs it", []string{"--no-new-privs", "--bounding-set", "-all,+bpf,+net_admin"}, "ok", "ok"},
		{"root without CAP_PERFMON", []string{"--bounding-set", "-perfmon,-sys_admin"}, "ok", "ok"},
		{"root without CAP_NET_ADMIN", []string{"--bounding-set", "-net_admin,-sys_admin"}, "CAP_NET_ADMIN not in the effective set", "operation not permitted"},
		{"root without CAP_BPF", []string{"--bounding-set", "-bpf,-sys_admin"}, "CAP_BPF not in the effective set", "operation not permitted"},
		{"root without any", []string{"--bounding-set", "-all"}, "CAP_BPF and CAP_NET_ADMIN not in the effective set", "operation not permitted"},
		{"non-root with ambient CAP_BPF and CAP_NET_ADMIN", append(nonRoot, "--inh-caps", "-all,+bpf,+net_admin", "--ambient-caps", "-all,+bpf,+net_admin"), "ok", "ok"},
		{"non-root with the capabilities only inheritable", append(nonRoot, "--inh-caps", "-all,+bpf,+net_admin"), "CAP_BPF and CAP_NET_ADMIN not in the effective set", "operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := helper(t, "open", "", "CGROUP="+cg.dir)
			cmd.Args = append(append(append([]string{"setpriv"}, tc.setpriv...), "--"), cmd.Args...)
			cmd.Path, _ = exec.LookPath("setpriv")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			open, raw, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			t.Logf("%s\n%s", open, raw)
			prefixed := func(col, want string) string {
				if want == "ok" {
					return col + ": ok"
				}
				return want
			}
			assert.Contains(t, open, prefixed("open", tc.want))
			assert.Contains(t, raw, prefixed("raw", tc.raw))
		})
	}
}

// The kernel agrees with the preflight: without the check, loading fails
// with EPERM, which Open words as ErrPermission.
func TestExplainPermission(t *testing.T) {
	err := explain("ebpf: loading the sock_ops program", fmt.Errorf("load program: %w", unix.EPERM))
	assert.ErrorIs(t, err, ErrPermission)
	assert.ErrorContains(t, err, "CAP_BPF and CAP_NET_ADMIN")
	assert.NotErrorIs(t, explain("x", errors.New("verifier")), ErrPermission)
}

// IPv6 connections are recorded with their IPv6 addresses.
func TestIPv6(t *testing.T) {
	requireRoot(t)
	enterCgroup(t)
	c, err := Open(Options{})
	require.NoError(t, err)
	defer c.Close()
	np := newNetPair(t)
	srv := listenIn(t, np.a, netip.IPv6Loopback())

	var fd int
	var mark uint64
	require.NoError(t, nfqueue.InNetns(np.a, func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0); err != nil {
			return err
		}
		mark = c.Mark()
		return unix.Connect(fd, &unix.SockaddrInet6{Addr: srv.addr().Addr().As16(), Port: int(srv.addr().Port())})
	}))
	defer unix.Close(fd)
	conn, ok := c.Handshake(srv.addr(), mark)
	require.True(t, ok, "%+v", c.Stats())
	assert.Equal(t, srv.addr(), conn.Remote)
	assert.Equal(t, netip.IPv6Loopback(), conn.Local.Addr())
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	require.NoError(t, err)
	assert.Equal(t, cookie, conn.Cookie)
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	require.NoError(t, err)
	assert.Equal(t, time.Duration(info.Rtt)*time.Microsecond, conn.SRTT)
}
