//go:build !linux && !windows

package kernelrtt

import "runtime"

func readFD(uintptr) Sample {
	return Sample{Unavailable: "kernel RTT is not implemented on " + runtime.GOOS}
}
