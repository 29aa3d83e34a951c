package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "xosprobe")
	require.NoError(t, os.WriteFile(binary, fakeBinary, 0o755))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o755))
	base2022 := makeBase(t, fakeBase{osVersion: "10.0.20348.4405", env: []string{nanoserverPath}, asTar: true})
	noEnv := func(string) string { return "" }
	epochEnv := func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return "1765000000"
		}
		return ""
	}
	common := []string{"--binary", binary, "--revision", testMeta.revision, "--version", "v1.2.3"}
	for _, tc := range []struct {
		name    string
		args    []string
		env     func(string) string
		code    int
		out     string   // file that must exist afterwards ("" for none)
		stdout  []string // substrings
		stderr  []string
		missing string // file that must not exist afterwards
	}{
		{
			name: "linux", env: epochEnv, code: 0,
			args:   append([]string{"linux", "--out", filepath.Join(dir, "l", "xosprobe-linux.oci.tar")}, common...),
			out:    filepath.Join(dir, "l", "xosprobe-linux.oci.tar"),
			stdout: []string{"ghcr.io/xosprobe/xosprobe:dev-linux", `PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" -> "/usr/local/bin/xosprobe"`, `User "65532:65532"`},
		},
		{
			name: "linux without a source date", env: noEnv, code: 1,
			args:    append([]string{"linux", "--out", filepath.Join(dir, "n", "x.tar")}, common...),
			stderr:  []string{"missing --source-date-epoch (or SOURCE_DATE_EPOCH)"},
			missing: filepath.Join(dir, "n", "x.tar"),
		},
		{
			name: "linux with an empty binary", env: epochEnv, code: 1,
			args:    []string{"linux", "--binary", empty, "--revision", "r", "--out", filepath.Join(dir, "e", "x.tar")},
			stderr:  []string{"binary is empty"},
			missing: filepath.Join(dir, "e", "x.tar"),
		},
		{
			name: "windows with one of three bases", env: epochEnv, code: 1,
			args: append([]string{"windows", "--out", filepath.Join(dir, "w1", "x.tar"), "--base", "ltsc2022=" + base2022}, common...),
			stderr: []string{
				"base ltsc2019: no --base ltsc2019=PATH given",
				"base ltsc2025: no --base ltsc2025=PATH given",
				"crane pull --format=oci --platform=windows/amd64 mcr.microsoft.com/windows/nanoserver:BUILD",
			},
			missing: filepath.Join(dir, "w1", "x.tar"),
		},
		{
			name: "windows base path that does not exist", env: epochEnv, code: 1,
			args:    append([]string{"windows", "--out", filepath.Join(dir, "w2", "x.tar"), "--builds", "ltsc2025", "--base", "ltsc2025=" + filepath.Join(dir, "nope")}, common...),
			stderr:  []string{"base ltsc2025: stat " + filepath.Join(dir, "nope")},
			missing: filepath.Join(dir, "w2", "x.tar"),
		},
		{
			name: "windows limited to the builds it has", env: epochEnv, code: 0,
			args:   append([]string{"windows", "--out", filepath.Join(dir, "w3", "x.tar"), "--builds", "ltsc2022", "--base", "ltsc2022=" + base2022}, common...),
			out:    filepath.Join(dir, "w3", "x.tar"),
			stdout: []string{"windows/amd64 10.0.20348.4405", `-> "C:\\xosprobe\\xosprobe.exe"`, `User "ContainerUser"`},
		},
		{
			name: "unknown build", env: epochEnv, code: 1,
			args:   append([]string{"windows", "--out", filepath.Join(dir, "w4", "x.tar"), "--base", "ltsc2016=" + base2022}, common...),
			stderr: []string{`unknown Windows build "ltsc2016"`},
		},
		{name: "no command", env: noEnv, code: 2, stderr: []string{"usage:"}},
		{name: "inspect a missing file", env: noEnv, code: 1, args: []string{"inspect", filepath.Join(dir, "none.tar")}, stderr: []string{"none.tar"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, tc.env, &stdout, &stderr)
			assert.Equal(t, tc.code, code, "stderr: %s", stderr.String())
			for _, s := range tc.stdout {
				assert.Contains(t, stdout.String(), s)
			}
			for _, s := range tc.stderr {
				assert.Contains(t, stderr.String(), s)
			}
			if tc.out != "" {
				assert.FileExists(t, tc.out)
				entries, err := os.ReadDir(filepath.Dir(tc.out))
				require.NoError(t, err)
				assert.Len(t, entries, 1, "no temporary files left beside the image")
			}
			if tc.missing != "" {
				assert.NoFileExists(t, tc.missing)
			}
		})
	}
}
