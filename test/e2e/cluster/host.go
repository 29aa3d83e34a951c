package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The host side of the fabric: everything the harness creates in the root
// network namespace and on the host's file system is named with the cluster's
// prefix, so Sweep finds it again after a crash by name alone (the host
// namespace's processes by the pidfiles under /run/<prefix>-e2e):
//
//	<prefix>-br0            underlay bridge, HostIP; every node's uplink is a port
//	<prefix>-n<i>           root end of node i's uplink veth
//	ip routes "proto 173"   pod CIDR routes and the blackholes (routeProto)
//	<PREFIX>-INPUT/FORWARD  iptables filter chains, jumped to from INPUT/FORWARD
//	netns <prefix>-*        node and pod network namespaces
//	/etc/netns/<prefix>-*   per-pod resolv.conf and hosts (ip netns exec mounts them)
//	overlay <prefix>-wine   per-pod Wine prefixes
//	/run/<prefix>-e2e/      pidfiles of the control plane
//
// plus /run/xosprobe-e2e.lock, held for a cluster's lifetime and removed by
// its Teardown.
//
// Nothing else on the host changes: ip_forward, br_netfilter and the
// conntrack sysctls kube-proxy touches are set inside node namespaces only.

// routeProto marks the harness's routes in the root namespace (any number
// that no routing daemon uses; 173 is unassigned in iproute2's rt_protos).
const routeProto = "173"

func bridgeName(prefix string) string      { return prefix + "-br0" }
func chainName(prefix, hook string) string { return strings.ToUpper(prefix) + "-" + hook }
func stateDir(prefix string) string        { return "/run/" + prefix + "-e2e" }
func pidDir(prefix string) string          { return filepath.Join(stateDir(prefix), "pids") }
func wineSource(prefix string) string      { return prefix + "-wine" }

// setupHost creates the underlay bridge with HostIP, blackholes the pod and
// service ranges so a packet for an address no node owns can never leave
// through the host's uplink, and accepts the bridge's traffic in the filter
// table in case the host's policy drops it.
func setupHost(ctx context.Context, prefix string) error {
	br := bridgeName(prefix)
	cmds := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", HostIP.String() + "/" + strconv.Itoa(NodeNetwork.Bits()), "dev", br},
		{"ip", "link", "set", br, "up"},
		{"ip", "route", "add", "blackhole", PodNetwork.String(), "proto", routeProto},
		{"ip", "route", "add", "blackhole", ServiceNetwork.String(), "proto", routeProto},
	}
	for _, hook := range []string{"INPUT", "FORWARD"} {
		ch := chainName(prefix, hook)
		cmds = append(cmds,
			[]string{"iptables", "-w", "-N", ch},
			// Bridged frames between node uplinks pass the root FORWARD chain
			// when br_netfilter is on; -i matches the bridge for them.
			[]string{"iptables", "-w", "-A", ch, "-i", br, "-j", "ACCEPT"},
			[]string{"iptables", "-w", "-I", hook, "1", "-m", "comment", "--comment", prefix + "-e2e", "-j", ch},
		)
	}
	return runAll(ctx, cmds...)
}

// Sweep removes everything a cluster with this prefix may have left on the
// host: processes (from pidfiles and inside the prefix's namespaces), network
// namespaces, links, routes, iptables chains, Wine overlays and /etc/netns
// entries. It is safe to call when nothing is left and returns what it removed.
func Sweep(prefix string) ([]string, error) {
	if prefix == "" {
		return nil, errors.New("sweep: empty prefix")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var removed []string
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		removed = append(removed, what)
	}

	for _, p := range killPidfiles(pidDir(prefix)) {
		removed = append(removed, "process "+p)
	}
	_ = os.Remove(pidDir(prefix)) // empty now; not there at all is fine too
	_ = os.Remove(stateDir(prefix))
	nss, err := netnsList(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	// Kill first, everywhere: a process in one namespace may hold a veth or a
	// mount another needs gone.
	for _, ns := range nss {
		if pids := netnsPIDs(ns); len(pids) > 0 {
			killPIDs(pids)
			removed = append(removed, fmt.Sprintf("%d processes in netns %s", len(pids), ns))
		}
	}
	// Containers of kubelet nodes run in network namespaces the runtime
	// made (not named in ip netns): found by their cgroup roots instead.
	k, err := SweepKubelets(prefix)
	removed = append(removed, k...)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mountsWithSource(wineSource(prefix)) {
		note("mount "+m, exec.Command("umount", "-l", m).Run())
	}
	for _, ns := range nss {
		_, err := run(ctx, "ip", "netns", "del", ns)
		note("netns "+ns, err)
	}
	if dirs, _ := filepath.Glob("/etc/netns/" + prefix + "-*"); len(dirs) > 0 {
		for _, d := range dirs {
			note(d, os.RemoveAll(d))
		}
	}
	links, err := linksWithPrefix(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		// Namespace deletion is asynchronous: the host end of a node's veth
		// may vanish between the listing and this delete.
		out, err := run(ctx, "ip", "link", "del", l)
		if err != nil && strings.Contains(out, "Cannot find device") {
			continue
		}
		note("link "+l, err)
	}
	if out, _ := run(ctx, "ip", "route", "show", "proto", routeProto); strings.TrimSpace(out) != "" {
		_, err := run(ctx, "ip", "route", "flush", "proto", routeProto)
		note("routes proto "+routeProto, err)
	}
	for _, hook := range []string{"INPUT", "FORWARD"} {
		ch := chainName(prefix, hook)
		if r, err := removeChain(ctx, hook, ch); err != nil {
			errs = append(errs, err)
		} else if r {
			removed = append(removed, "iptables chain "+ch)
		}
	}
	return removed, errors.Join(errs...)
}

// Leftovers lists what Sweep would remove, without removing it.
func Leftovers(prefix string) ([]string, error) {
	var left []string
	if _, err := os.Stat(stateDir(prefix)); err == nil {
		left = append(left, stateDir(prefix))
	}
	entries, _ := os.ReadDir(pidDir(prefix))
	for _, e := range entries {
		left = append(left, "pidfile "+e.Name())
	}
	nss, err := netnsList(prefix)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		left = append(left, "netns "+ns)
	}
	for _, h := range cgroupHierarchies() {
		m, _ := filepath.Glob(filepath.Join(h, kubeletCgroupPrefix(prefix)+"*"))
		for _, d := range m {
			left = append(left, "cgroup "+d)
		}
	}
	for _, m := range mountsWithSource(wineSource(prefix)) {
		left = append(left, "mount "+m)
	}
	if dirs, _ := filepath.Glob("/etc/netns/" + prefix + "-*"); len(dirs) > 0 {
		left = append(left, dirs...)
	}
	links, err := linksWithPrefix(prefix)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		left = append(left, "link "+l)
	}
	if out, _ := run(context.Background(), "ip", "route", "show", "proto", routeProto); strings.TrimSpace(out) != "" {
		left = append(left, "routes: "+strings.TrimSpace(out))
	}
	out, err := run(context.Background(), "iptables-save", "-t", "filter")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, strings.ToUpper(prefix)+"-") || strings.Contains(line, prefix+"-") {
			left = append(left, "iptables: "+line)
		}
	}
	return left, nil
}

func netnsList(prefix string) ([]string, error) {
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line) // "name (id: 3)"
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// netnsPIDs lists the processes whose network namespace is ns.
func netnsPIDs(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func linksWithPrefix(prefix string) ([]string, error) {
	out, err := run(context.Background(), "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line) // "7: xne2e-n1@if2: <...>"
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix+"-") {
			links = append(links, name)
		}
	}
	return links, nil
}

func mountsWithSource(source string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[0] == source {
			mounts = append(mounts, fields[1])
		}
	}
	return mounts
}

// removeChain deletes every jump from hook to chain, then the chain.
func removeChain(ctx context.Context, hook, chain string) (bool, error) {
	if _, err := run(ctx, "iptables", "-w", "-S", chain); err != nil {
		return false, nil // no such chain
	}
	out, err := run(ctx, "iptables", "-w", "-S", hook)
	if err != nil {
		return false, err
	}
	for _, rule := range strings.Split(out, "\n") {
		if !strings.HasSuffix(rule, "-j "+chain) {
			continue
		}
		// "-A INPUT -m comment ... -j CHAIN" -> "-D INPUT ...". Comments are
		// quoted by iptables -S only when they contain spaces; ours do not.
		args := append([]string{"iptables", "-w", "-D"}, strings.Fields(rule)[1:]...)
		if _, err := run(ctx, args...); err != nil {
			return false, err
		}
	}
	if _, err := run(ctx, "iptables", "-w", "-F", chain); err != nil {
		return false, err
	}
	_, err = run(ctx, "iptables", "-w", "-X", chain)
	return err == nil, err
}
