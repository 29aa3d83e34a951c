//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// effectiveCaps reads this thread's effective capability set.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/thread-self/status")
}

// missingCaps names the capabilities the collector lacks: CAP_BPF to create
// maps and load programs, CAP_NET_ADMIN because sock_ops is a networking
// program type. CAP_SYS_ADMIN stands in for both.
func missingCaps(eff uint64) []string {
	has := func(c int) bool { return eff&(1<<c) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var miss []string
	if !has(unix.CAP_BPF) {
		miss = append(miss, "CAP_BPF")
	}
	if !has(unix.CAP_NET_ADMIN) {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	return miss
}

// checkCaps fails when capabilities are missing. When the set cannot be
// read it lets the kernel decide, and explain classifies its answer.
func checkCaps() error {
	eff, readErr := effectiveCaps()
	if readErr != nil {
		return nil //nolint:nilerr // unknown set: the load itself is the check
	}
	if miss := missingCaps(eff); len(miss) > 0 {
		return fmt.Errorf("%w: %s not in the effective set (a cgroup sock_ops program needs CAP_BPF and CAP_NET_ADMIN, or root); in Kubernetes, add them to a container running as root, as non-root users do not get added capabilities",
			ErrPermission, strings.Join(miss, " and "))
	}
	return nil
}

// explain classifies a load or attach error for the operator.
func explain(step string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: %w: %w (needs CAP_BPF and CAP_NET_ADMIN, or root; a seccomp profile may also block bpf(2))", step, ErrPermission, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%s: %w: %w", step, ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}
