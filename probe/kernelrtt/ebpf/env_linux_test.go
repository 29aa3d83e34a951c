//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/test/nfqueue"
)

// The integration tests need root: they load BPF, create cgroups, network
// namespaces and iptables rules, and move this test process into a cgroup of
// its own (the "agent's" cgroup) for their duration. Helper processes are
// this test binary re-executed with helperEnv set.

const helperEnv = "XOSPROBE_EBPF_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "connect":
		os.Exit(helperConnect())
	case "open":
		os.Exit(helperOpen())
	case "serve":
		os.Exit(helperServe())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (loads BPF, creates cgroups, network namespaces and iptables rules); run: sudo -E go test ./probe/kernelrtt/ebpf/")
	}
}

// testCgroup is a cgroup this test process moved into; Close moves it back.
type testCgroup struct {
	dir, home string
}

var cgSeq int

// enterCgroup creates a child of the cgroup2 root and moves this whole
// process (all threads) into it. Sockets created from then on belong to it.
func enterCgroup(tb testing.TB) *testCgroup {
	tb.Helper()
	home, _, err := ownCgroup()
	if err != nil {
		tb.Skipf("no usable cgroup v2 here: %v", err)
	}
	mnt, err := cgroup2Mount()
	if err != nil {
		tb.Skipf("no cgroup2 mount: %v", err)
	}
	cgSeq++
	dir := filepath.Join(mnt, fmt.Sprintf("xosprobe-ebpf-test-%d-%d", os.Getpid(), cgSeq))
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	cg := &testCgroup{dir: dir, home: home}
	if err := movePID(dir, os.Getpid()); err != nil {
		_ = os.Remove(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := movePID(cg.home, os.Getpid()); err != nil {
			tb.Errorf("moving back to %s: %v", cg.home, err)
		}
		// The kernel frees the cgroup once its last socket is gone; retry briefly.
		for i := 0; ; i++ {
			err := os.Remove(dir)
			if err == nil || i == 50 {
				if err != nil {
					tb.Logf("removing %s: %v", dir, err)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return cg
}

func movePID(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+1 < len(f) && f[i+1] == "cgroup2" && f[3] == "/" {
				return unescapeMount(f[4]), nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup2 mount of the hierarchy's root")
}

// netPair is two network namespaces joined by a veth pair: a (client,
// 10.248.<n>.1) and b (server, 10.248.<n>.2).
type netPair struct {
	a, b       string
	ipA, ipB   netip.Addr
	iptRules   [][]string
	iptRulesMu sync.Mutex
}

func newNetPair(tb testing.TB) *netPair {
	tb.Helper()
	id := os.Getpid() % 250
	p := &netPair{
		a:   fmt.Sprintf("xosp-ebpf-a-%d", os.Getpid()),
		b:   fmt.Sprintf("xosp-ebpf-b-%d", os.Getpid()),
		ipA: netip.AddrFrom4([4]byte{10, 248, byte(id), 1}),
		ipB: netip.AddrFrom4([4]byte{10, 248, byte(id), 2}),
	}
	va, vb := fmt.Sprintf("xea%d", os.Getpid()), fmt.Sprintf("xeb%d", os.Getpid())
	tb.Cleanup(func() {
		p.iptRulesMu.Lock()
		for _, r := range p.iptRules {
			del := append([]string{"netns", "exec", p.b, "iptables"}, r...)
			for i, a := range del {
				if a == "-A" {
					del[i] = "-D"
				}
			}
			if out, err := exec.Command("ip", del...).CombinedOutput(); err != nil {
				tb.Logf("removing iptables rule: %v: %s", err, out)
			}
		}
		p.iptRulesMu.Unlock()
		_ = exec.Command("ip", "netns", "del", p.a).Run()
		_ = exec.Command("ip", "netns", "del", p.b).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", p.a},
		{"netns", "add", p.b},
		{"link", "add", va, "netns", p.a, "type", "veth", "peer", "name", vb, "netns", p.b},
		{"-n", p.a, "addr", "add", p.ipA.String() + "/30", "dev", va},
		{"-n", p.b, "addr", "add", p.ipB.String() + "/30", "dev", vb},
		{"-n", p.a, "link", "set", va, "up"},
		{"-n", p.b, "link", "set", vb, "up"},
		{"-n", p.a, "link", "set", "lo", "up"},
		{"-n", p.b, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return p
}

// iptablesB adds a rule in namespace b, removed at cleanup.
func (p *netPair) iptablesB(tb testing.TB, rule ...string) {
	tb.Helper()
	args := append([]string{"netns", "exec", p.b, "iptables"}, rule...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("iptables %s: %v: %s", strings.Join(rule, " "), err, out)
	}
	p.iptRulesMu.Lock()
	p.iptRules = append(p.iptRules, rule)
	p.iptRulesMu.Unlock()
}

// server accepts on ln and holds every connection open until closed, so
// the client side stays ESTABLISHED for ss.
type server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func listenIn(tb testing.TB, ns string, ip netip.Addr) *server {
	tb.Helper()
	var ln net.Listener
	if err := nfqueue.InNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	s := &server{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *server) addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// probeConnect is the probe's connect path (probe/connect_linux.go) with the
// proposed collector seam: mark, blocking connect(2), lookup. It runs in
// namespace ns and returns the connected descriptor, left open.
func probeConnect(ns string, c *Collector, remote netip.AddrPort) (fd int, conn Conn, ok bool, err error) {
	err = nfqueue.InNetns(ns, func() error {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		mark := c.Mark()
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("connect %s: %w", remote, err)
		}
		conn, ok = c.Handshake(remote, mark)
		return nil
	})
	return fd, conn, ok, err
}

// ssRTT runs `ss -tin` in namespace ns for the connection local->remote and
// returns its rtt field (tcpi_rtt).
func ssRTT(ns string, local, remote netip.AddrPort) (time.Duration, string, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-tinH", "state", "established",
		"src", local.String(), "dst", remote.String()).CombinedOutput()
	if err != nil {
		return 0, string(out), fmt.Errorf("ss: %w: %s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "rtt:"); ok {
			ms, _, _ := strings.Cut(v, "/")
			x, err := strconv.ParseFloat(ms, 64)
			if err != nil {
				return 0, string(out), err
			}
			return time.Duration(x * float64(time.Millisecond)).Round(time.Microsecond), string(out), nil
		}
	}
	return 0, string(out), fmt.Errorf("no rtt in ss output %q", out)
}

// helperConnect connects $N times to $ADDR from namespace $NETNS, in whatever
// cgroup the parent started it in, and prints "ok".
func helperConnect() int {
	n, _ := strconv.Atoi(os.Getenv("N"))
	addr := netip.MustParseAddrPort(os.Getenv("ADDR"))
	var fds []int
	err := nfqueue.InNetns(os.Getenv("NETNS"), func() error {
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// helperOpen opens a collector on cgroup $CGROUP and prints the outcome
// ("open: ..."), then loads and attaches the program as Open does minus the
// capability preflight and prints the kernel's answer ("raw: ...").
func helperOpen() int {
	if c, err := Open(Options{Cgroup: os.Getenv("CGROUP")}); err != nil {
		fmt.Println("open: error:", err)
	} else {
		c.Close()
		fmt.Println("open: ok")
	}
	var objs rttObjects
	if err := loadRttObjects(&objs, nil); err != nil {
		fmt.Println("raw: error:", err)
		return 0
	}
	defer objs.Close()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: os.Getenv("CGROUP"), Attach: ebpf.AttachCGroupSockOps, Program: objs.RttSockops})
	if err != nil {
		fmt.Println("raw: error:", err)
		return 0
	}
	l.Close()
	fmt.Println("raw: ok")
	return 0
}

// helperServe accepts on loopback and closes each connection, printing its
// address, until stdin closes: the benchmark's peer, outside the agent's
// cgroup and CPU accounting.
func helperServe() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fmt.Println(ln.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// helper starts this test binary in a helper mode, in the cgroup dir (the
// process's original one when dir is "").
func helper(tb testing.TB, mode, cgroupDir string, env ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	if cgroupDir != "" {
		fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { unix.Close(fd) })
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	return cmd
}
