//go:build linux

package nfqueue

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkHoldAccuracy measures the delayer as the e2e uses it: SYNs into a
// server namespace are held for D, a client in another namespace times
// blocking connects to it, and the change of the median connect time between
// D=0 and D is compared with the change of the delayer's median recorded hold.
// error-us is that difference (the e2e asserts it within 300 us). Root only
// (network namespaces, iptables).
//
//	go test -run '^$' -bench HoldAccuracy -benchtime 1x ./test/nfqueue/
func BenchmarkHoldAccuracy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: network namespaces and iptables")
	}
	client, server := netnsPair(b)
	var ln net.Listener
	if err := InNetns(server, func() (err error) { ln, err = net.Listen("tcp", "10.199.0.2:9440"); return err }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ipt(b, server, "-t", "mangle", "-A", "INPUT", "-p", "tcp", "--dport", "9440", "--syn", "-j", "NFQUEUE", "--queue-num", "7")
	d, err := Start(server, 7, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()

	const n = 400
	sample := func(hold time.Duration) (connect, held time.Duration) {
		d.SetHold(hold)
		d.TakeHolds()
		var times []time.Duration
		for range n {
			time.Sleep(time.Duration(5+rand.IntN(10)) * time.Millisecond) // a probe's pace: an idle CPU between connects
			t, err := timedConnect(client, [4]byte{10, 199, 0, 2}, 9440)
			if err != nil {
				b.Fatal(err)
			}
			times = append(times, t)
		}
		return Median(times), Median(d.TakeHolds())
	}
	for b.Loop() {
		c0, h0 := sample(0)
		for _, hold := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond} {
			c, h := sample(hold)
			b.ReportMetric(float64((c-c0)-(h-h0))/1e3, fmt.Sprintf("error-us-D%dms", hold/time.Millisecond))
			b.Logf("D=%v: connect median %v -> %v, hold median %v -> %v", hold, c0, c, h0, h)
		}
	}
}

// timedConnect times one blocking connect(2) from namespace ns, as the
// prober does, and resets the connection.
func timedConnect(ns string, ip [4]byte, port int) (time.Duration, error) {
	var fd int
	if err := InNetns(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	}); err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	start := time.Now()
	err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ip, Port: port})
	elapsed := time.Since(start)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return elapsed, err
}

// netnsPair makes two namespaces joined by a veth pair, 10.199.0.1 (client)
// and 10.199.0.2 (server), removed when the benchmark ends.
func netnsPair(b *testing.B) (client, server string) {
	client, server = fmt.Sprintf("nfqa-c-%d", os.Getpid()), fmt.Sprintf("nfqa-s-%d", os.Getpid())
	veth := fmt.Sprintf("nfqa%d", os.Getpid()%100000)
	b.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", client).Run()
		_ = exec.Command("ip", "netns", "del", server).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", client},
		{"netns", "add", server},
		{"link", "add", veth + "a", "netns", client, "type", "veth", "peer", "name", veth + "b", "netns", server},
		{"-n", client, "addr", "add", "10.199.0.1/24", "dev", veth + "a"},
		{"-n", server, "addr", "add", "10.199.0.2/24", "dev", veth + "b"},
		{"-n", client, "link", "set", veth + "a", "up"},
		{"-n", server, "link", "set", veth + "b", "up"},
		{"-n", client, "link", "set", "lo", "up"},
		{"-n", server, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return client, server
}

func ipt(b *testing.B, ns string, rule ...string) {
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "iptables", "-w"}, rule...)...).CombinedOutput(); err != nil {
		b.Fatalf("iptables %v: %v: %s", rule, err, out)
	}
}
