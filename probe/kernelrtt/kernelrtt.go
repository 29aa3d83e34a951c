// Package kernelrtt reads the kernel's smoothed round-trip time of a connected
// TCP socket: TCP_INFO on Linux, SIO_TCP_INFO on Windows. It separates the
// wire from the host: a user-space connect time includes scheduling and
// wake-ups, the kernel's RTT estimate does not.
package kernelrtt

import (
	"net"
	"syscall"
	"time"
)

// Source says where an RTT figure came from. The values are stable strings
// recorded in results and metrics.
type Source string

const (
	SourceNone       Source = ""
	SourceTCPInfo    Source = "tcp_info"     // Linux getsockopt(TCP_INFO).tcpi_rtt
	SourceSIOTCPInfo Source = "sio_tcp_info" // Windows WSAIoctl(SIO_TCP_INFO) v0 RttUs
	SourceEBPF       Source = "ebpf"         // Linux eBPF collector
)

// Sample is one reading. When RTT could not be read, Source is SourceNone and
// Unavailable says why; RTT is then meaningless and must not be reported as 0.
type Sample struct {
	RTT         time.Duration `json:"ns,omitempty"`
	Source      Source        `json:"source,omitempty"`
	Unavailable string        `json:"unavailable,omitempty"`
}

// Available reports whether the sample holds a real reading.
func (s Sample) Available() bool { return s.Source != SourceNone }

// Read returns the smoothed RTT of a connected TCP connection, reading its
// socket with readFD (nil: ReadFD; the prober passes its seam, which the
// eBPF collector may replace).
func Read(c net.Conn, readFD func(fd uintptr) Sample) Sample {
	if readFD == nil {
		readFD = ReadFD
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Sample{Unavailable: "not a socket connection"}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Sample{Unavailable: "no raw socket: " + err.Error()}
	}
	var s Sample
	if err := raw.Control(func(fd uintptr) { s = readFD(fd) }); err != nil {
		return Sample{Unavailable: "socket closed: " + err.Error()}
	}
	return s
}

// ReadFD reads the RTT of a connected TCP socket given its descriptor (a
// SOCKET handle on Windows).
func ReadFD(fd uintptr) Sample { return readFD(fd) }
