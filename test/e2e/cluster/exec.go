package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// run runs a short administrative command (ip, iptables, ...) and returns its
// combined output; the error carries the output, which is where ip and
// iptables explain themselves.
func run(ctx context.Context, argv ...string) (string, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// runIn runs argv inside network namespace ns.
func runIn(ctx context.Context, ns string, argv ...string) (string, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// runAll runs commands in order and stops at the first failure.
func runAll(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := run(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

// setSysctls writes net.* sysctls inside network namespace ns (they are per
// namespace, so a process in ns has to write them; nothing on the host changes).
func setSysctls(ctx context.Context, ns string, kv map[string]string) error {
	var b strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&b, "echo %s > /proc/sys/%s && ", v, strings.ReplaceAll(k, ".", "/"))
	}
	b.WriteString("true")
	_, err := runIn(ctx, ns, "sh", "-c", b.String())
	return err
}
