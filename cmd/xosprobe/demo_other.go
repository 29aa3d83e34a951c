//go:build !linux

package main

import "os/exec"

// dieWithParent is Linux's parent-death signal; elsewhere the demo's own
// cleanup stops its agents (the demo is made for Linux hosts with Wine).
func dieWithParent(*exec.Cmd) {}
