package kernelrtt

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func readFD(fd uintptr) Sample {
	// getsockopt(2) into a struct on the stack: unix.GetsockoptTCPInfo
	// returns a heap copy, one allocation per probe for one field.
	var info unix.TCPInfo
	size := uint32(unix.SizeofTCPInfo)
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return Sample{Unavailable: "getsockopt TCP_INFO: " + errno.Error()}
	}
	// tcpi_rtt is in microseconds; 0 means the kernel has no sample yet.
	if info.Rtt == 0 {
		return Sample{Unavailable: "TCP_INFO has no RTT sample yet"}
	}
	return Sample{RTT: time.Duration(info.Rtt) * time.Microsecond, Source: SourceTCPInfo}
}
