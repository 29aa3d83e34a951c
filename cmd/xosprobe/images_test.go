package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// windowsBuilds are the nanoserver tags the Windows image supports: they must
// match the node's OS build under process isolation.
var windowsBuilds = []string{"ltsc2019", "ltsc2022"}

// instruction is one Dockerfile instruction with its stage index.
type instruction struct {
	stage      int
	cmd, value string
}

func parseDockerfile(t *testing.T, name string) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", name))
	require.NoError(t, err)
	defer f.Close()
	var out []instruction
	stage := -1
	sc := bufio.NewScanner(f)
	var line string
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || text == "" {
			continue
		}
		line += text
		if strings.HasSuffix(line, "\\") { // continuation
			line = strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cmd, value, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{stage: stage, cmd: cmd, value: strings.TrimSpace(value)})
		line = ""
	}
	require.NoError(t, sc.Err())
	return out
}

func TestWindowsDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile.windows")
	var defaultBuild, finalFrom string
	last := ins[len(ins)-1].stage
	for _, in := range ins {
		if in.cmd == "ARG" && strings.HasPrefix(in.value, "WINDOWS_VERSION=") && in.stage == -1 {
			defaultBuild = strings.TrimPrefix(in.value, "WINDOWS_VERSION=")
		}
		if in.stage == last {
			switch in.cmd {
			case "FROM":
				finalFrom = in.value
			case "COPY", "USER", "ENTRYPOINT":
			default:
				t.Errorf("final Windows stage has %s: only COPY (USER, ENTRYPOINT) lets a Linux builder produce it", in.cmd)
			}
		}
		if in.cmd == "FROM" && in.stage < last {
			assert.Contains(t, in.value, "--platform=linux/amd64", "the build stage runs on Linux")
		}
	}
	assert.Contains(t, windowsBuilds, defaultBuild, "default WINDOWS_VERSION")
	assert.Equal(t, "mcr.microsoft.com/windows/nanoserver:${WINDOWS_VERSION}", finalFrom)
	// The tags the build arg selects exist: mcr.microsoft.com/windows/nanoserver publishes
	// ltsc2019 and ltsc2022 (goldpinger once shipped "ltcs2022").
	for _, b := range windowsBuilds {
		assert.Regexp(t, `^ltsc20(19|22)$`, b)
	}
	entry := ins[len(ins)-1]
	assert.Equal(t, "ENTRYPOINT", entry.cmd)
	assert.Contains(t, entry.value, `xosprobe.exe`)

	makefile, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	require.NoError(t, err)
	assert.Contains(t, string(makefile), "for v in "+strings.Join(windowsBuilds, " ")+"; do", "make images builds every supported tag")
	for _, b := range windowsBuilds {
		overlay, err := os.ReadFile(filepath.Join("..", "..", "manifests", "overlays", b, "kustomization.yaml"))
		require.NoError(t, err, "an overlay per supported build")
		assert.Contains(t, string(overlay), "newTag: dev-windows-"+b)
	}
}

func TestLinuxDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile.linux")
	last := ins[len(ins)-1].stage
	var final []instruction
	for _, in := range ins {
		if in.stage == last {
			final = append(final, in)
		}
		if in.cmd == "RUN" && strings.Contains(in.value, "go build") {
			assert.Contains(t, in.value, "CGO_ENABLED=0", "a static binary")
		}
	}
	assert.Regexp(t, regexp.MustCompile(`^gcr\.io/distroless/static-debian\d+:nonroot$`), final[0].value)
	var user string
	for _, in := range final {
		assert.NotEqual(t, "RUN", in.cmd, "nothing runs in the final image")
		if in.cmd == "USER" {
			user = in.value
		}
	}
	assert.Equal(t, "65532:65532", user, "non-root, as the manifests' runAsUser")
}
