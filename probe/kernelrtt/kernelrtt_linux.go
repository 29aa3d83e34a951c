package kernelrtt

import (
	"time"

	"golang.org/x/sys/unix"
)

func readFD(fd uintptr) Sample {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return Sample{Unavailable: "getsockopt TCP_INFO: " + err.Error()}
	}
	// tcpi_rtt is in microseconds; 0 means the kernel has no sample yet.
	if info.Rtt == 0 {
		return Sample{Unavailable: "TCP_INFO has no RTT sample yet"}
	}
	return Sample{RTT: time.Duration(info.Rtt) * time.Microsecond, Source: SourceTCPInfo}
}
