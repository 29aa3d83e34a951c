//go:build linux

package nfqueue

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Pair is two network namespaces joined by a veth pair: Client at
// 10.199.0.1, Server at 10.199.0.2, loopback up in both. The delayer's
// benchmarks hold the packets entering Server.
type Pair struct{ Client, Server string }

// Pair addresses.
const (
	PairClientIP = "10.199.0.1"
	PairServerIP = "10.199.0.2"
)

// NewPair makes the namespaces <name>-c and <name>-s (name: at most 11
// characters, it also names the veth ends). Delete removes them, with
// everything in them, also after a failed NewPair.
func NewPair(name string) (Pair, error) {
	p := Pair{Client: name + "-c", Server: name + "-s"}
	for _, args := range [][]string{
		{"netns", "add", p.Client},
		{"netns", "add", p.Server},
		{"link", "add", name + "-a", "netns", p.Client, "type", "veth", "peer", "name", name + "-b", "netns", p.Server},
		{"-n", p.Client, "addr", "add", PairClientIP + "/24", "dev", name + "-a"},
		{"-n", p.Server, "addr", "add", PairServerIP + "/24", "dev", name + "-b"},
		{"-n", p.Client, "link", "set", name + "-a", "up"},
		{"-n", p.Server, "link", "set", name + "-b", "up"},
		{"-n", p.Client, "link", "set", "lo", "up"},
		{"-n", p.Server, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return p, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return p, nil
}

// Delete kills what runs in the namespaces and removes them.
func (p Pair) Delete() {
	for _, ns := range []string{p.Server, p.Client} {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// HoldRules are the iptables rule specs (for the mangle table's INPUT chain)
// that queue the TCP packets from src (addresses, comma-separated) to dports
// (a port or a first:last range): syn sends the SYNs, what a connect waits
// for, to synQueue; rest sends the rest of each exchange to restQueue. Held
// apart, each phase can be compared with the holds of its own packets. With
// no delayer on a queue its packets pass.
func HoldRules(src, dports string, synQueue, restQueue uint16) (syn, rest []string) {
	match := []string{"-p", "tcp", "-s", src, "-m", "multiport", "--dports", dports}
	queue := func(q uint16) []string {
		return []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(q)), "--queue-bypass"}
	}
	return slices.Concat(match, []string{"--syn"}, queue(synQueue)), slices.Concat(match, []string{"!", "--syn"}, queue(restQueue))
}

// InputRule adds (op "-A") or deletes (op "-D") the rule spec, e.g. one of
// HoldRules, on the mangle table's INPUT chain of network namespace ns.
func InputRule(ctx context.Context, ns, op string, spec []string) error {
	args := slices.Concat([]string{"netns", "exec", ns, "iptables", "-w", "-t", "mangle", op, "INPUT"}, spec)
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s in %s: %w: %s", op, ns, err, bytes.TrimSpace(out))
	}
	return nil
}
