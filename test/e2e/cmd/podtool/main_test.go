package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		argv       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "id", argv: []string{"podtool", "id"}, wantStdout: fmt.Sprintf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())},
		{name: "hostname", argv: []string{"podtool", "hostname"}, wantStdout: host + "\n"},
		{name: "no command", argv: []string{"podtool"}, wantCode: 2, wantStderr: "usage"},
		{name: "unknown command", argv: []string{"podtool", "frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
		{name: "serve without address", argv: []string{"podtool", "serve"}, wantCode: 2, wantStderr: "usage: podtool serve ADDR"},
		{name: "serve on a bad address", argv: []string{"podtool", "serve", "127.0.0.1:notaport"}, wantCode: 1, wantStderr: "notaport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.argv, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantStdout != "" && stdout.String() != tt.wantStdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
