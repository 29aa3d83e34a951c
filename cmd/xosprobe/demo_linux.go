package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill an agent when the demo dies, however it
// dies: `xosprobe demo | head -3` ends it by SIGPIPE before any deferred
// cleanup runs.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
