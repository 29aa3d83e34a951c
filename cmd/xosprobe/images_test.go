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
var windowsBuilds = []string{"ltsc2019", "ltsc2022", "ltsc2025"}

// imageLabels are the OCI labels both Dockerfiles set from build args.
var imageLabels = []string{
	"org.opencontainers.image.title=xosprobe",
	"org.opencontainers.image.source=https://github.com/xosprobe/xosprobe",
	"org.opencontainers.image.version=${VERSION}",
	"org.opencontainers.image.revision=${REVISION}",
}

// finalStage returns the instructions of the Dockerfile's last stage.
func finalStage(ins []instruction) []instruction {
	last := ins[len(ins)-1].stage
	var out []instruction
	for _, in := range ins {
		if in.stage == last {
			out = append(out, in)
		}
	}
	return out
}

// checkImageMetadata asserts the final stage's labels come from ARGs declared
// in that stage (an ARG before FROM is not visible after it), and that the
// Entrypoint's directory is on the PATH the stage sets.
func checkImageMetadata(t *testing.T, final []instruction, entrypoint, pathDir, pathSep string) {
	t.Helper()
	var args, labels, env []string
	var entry string
	for _, in := range final {
		switch in.cmd {
		case "ARG":
			name, _, _ := strings.Cut(in.value, "=")
			args = append(args, name)
		case "LABEL":
			labels = append(labels, strings.Fields(in.value)...)
		case "ENV":
			env = append(env, in.value)
		case "ENTRYPOINT":
			entry = in.value
		}
	}
	assert.ElementsMatch(t, imageLabels, labels)
	assert.Subset(t, args, []string{"VERSION", "REVISION"}, "labels read ARGs of the final stage")
	assert.Equal(t, entrypoint, entry)
	require.Len(t, env, 1, "one ENV: PATH")
	name, value, _ := strings.Cut(env[0], "=")
	assert.Equal(t, "PATH", name)
	assert.Contains(t, strings.Split(strings.Trim(value, `"`), pathSep), pathDir, "the binary's directory on PATH")
}

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
			case "ARG", "LABEL", "COPY", "ENV", "USER", "ENTRYPOINT":
			default:
				t.Errorf("final Windows stage has %s: only COPY and metadata (ARG, LABEL, ENV, USER, ENTRYPOINT) let a Linux builder produce it", in.cmd)
			}
		}
		if in.cmd == "FROM" && in.stage < last {
			assert.Contains(t, in.value, "--platform=linux/amd64", "the build stage runs on Linux")
		}
	}
	assert.Contains(t, windowsBuilds, defaultBuild, "default WINDOWS_VERSION")
	assert.Equal(t, "mcr.microsoft.com/windows/nanoserver:${WINDOWS_VERSION}", finalFrom)
	// The tags the build arg selects exist: mcr.microsoft.com/windows/nanoserver publishes
	// ltsc2019, ltsc2022 and ltsc2025 (goldpinger once shipped "ltcs2022").
	for _, b := range windowsBuilds {
		assert.Regexp(t, `^ltsc20(19|22|25)$`, b)
	}
	final := finalStage(ins)
	checkImageMetadata(t, final, `["C:\\xosprobe\\xosprobe.exe"]`, `C:\xosprobe`, ";")
	var user, copyTo string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.value
		case "COPY":
			fields := strings.Fields(in.value)
			copyTo = fields[len(fields)-1]
		}
	}
	assert.Equal(t, "ContainerUser", user, "not ContainerAdministrator")
	assert.Equal(t, "/xosprobe/xosprobe.exe", copyTo, `the binary lands in C:\xosprobe, the PATH entry`)

	makefile, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	require.NoError(t, err)
	assert.Contains(t, string(makefile), "WINDOWS_BUILDS ?= "+strings.Join(windowsBuilds, " "), "make image-windows and images-docker build every supported tag")
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
	var user, copyTo string
	for _, in := range final {
		assert.NotEqual(t, "RUN", in.cmd, "nothing runs in the final image")
		switch in.cmd {
		case "USER":
			user = in.value
		case "COPY":
			fields := strings.Fields(in.value)
			copyTo = fields[len(fields)-1]
		}
	}
	assert.Equal(t, "65532:65532", user, "non-root, as the manifests' runAsUser")
	assert.Equal(t, "/usr/local/bin/xosprobe", copyTo, "the binary lands in the PATH entry the Entrypoint names")
	checkImageMetadata(t, final, `["/usr/local/bin/xosprobe"]`, "/usr/local/bin", ":")
}
