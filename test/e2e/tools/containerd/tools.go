//go:build tools

// Package tools pins containerd's commands for test/e2e/build.sh; it is never
// compiled (the build tag keeps it out), only read by go mod tidy.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
