package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The demo end to end: real agent processes on loopback report to the
// in-process aggregator, and every OS pair shows up with successful tcp and
// http steps. With XOSPROBE_WINDOWS_BINARY (make test-windows sets it) the
// Windows agents are the windows/amd64 binary under Wine.
func TestDemoMeshReportsEveryOSPair(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the demo drives Linux agent processes")
	}
	if testing.Short() {
		t.Skip("starts agent processes for ~20 s")
	}
	bin := buildLinuxBinary(t)

	f := demoFlags{linuxBinary: bin, linux: 2, windows: 2, interval: 500 * time.Millisecond, refresh: time.Hour,
		wine: "wine", check: "tcp", windowsBinary: os.Getenv("XOSPROBE_WINDOWS_BINARY")}
	if f.windowsBinary == "" {
		f.wine = "no-such-wine-launcher" // the plainly-said fallback
	} else if abs, err := filepath.Abs(f.windowsBinary); err == nil {
		f.windowsBinary = abs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var buf bytes.Buffer
	require.NoError(t, runDemo(ctx, &buf, f), buf.String())
	text := buf.String()
	t.Log(text)
	if f.windowsBinary != "" {
		assert.Contains(t, text, "Windows agents: the windows/amd64 binary")
	} else {
		assert.Contains(t, text, "this Linux binary labelled windows")
	}
	for _, pair := range []string{"linux->linux", "linux->windows", "windows->linux", "windows->windows"} {
		assert.Regexp(t, `(?m)^`+pair+`\s+\d+% \S+\s+[1-9]\d*% \d+\.\d+\s+[1-9]\d*% \d+\.\d+`, text,
			"%s: dns, then tcp and http with successes and a p50", pair)
	}
	assert.Contains(t, text, "OS x OS, tcp connect")
}

// buildLinuxBinary builds this command for the host, as the demo's agents run it.
func buildLinuxBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(tempDir(t), "xosprobe")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}
