package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// children lists the PIDs whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if ppid, ok := strings.CutPrefix(line, "PPid:"); ok && strings.TrimSpace(ppid) == strconv.Itoa(pid) {
				out = append(out, child)
			}
		}
	}
	return out
}

// running reports whether pid exists and is not a zombie awaiting its reaper.
func running(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// A demo that dies at once (SIGKILL here; SIGPIPE under `| head`) takes its
// agent processes with it instead of leaving them to init.
func TestDemoAgentsDieWithTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agent processes")
	}
	bin := buildLinuxBinary(t)

	demo := exec.Command(bin, "demo", "--duration", "2m", "--refresh", "1h", "--wine", "no-such-wine-launcher")
	require.NoError(t, demo.Start())
	var agents []int
	require.Eventually(t, func() bool {
		agents = children(t, demo.Process.Pid)
		return len(agents) == 4
	}, 20*time.Second, 50*time.Millisecond, "the demo's 4 agents")

	require.NoError(t, demo.Process.Kill())
	_ = demo.Wait()
	require.Eventually(t, func() bool {
		for _, pid := range agents {
			if running(pid) {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "agents %v outlived the demo", agents)
}
