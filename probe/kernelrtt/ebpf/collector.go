package ebpf

import (
	"errors"
	"net/netip"
	"time"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// Options configures Open. The zero value observes the process's own cgroup.
type Options struct {
	// Cgroup is the cgroup v2 directory whose sockets are observed. Empty means
	// the process's own cgroup (in a pod: the agent container's); Open refuses
	// to pick the root of the hierarchy by itself.
	Cgroup string
	// RingBytes is the size of the event ring: a power of two, at least one
	// page. 0 means DefaultRingBytes.
	RingBytes int
	// MaxAge is how long a handshake nobody looked up is kept. 0 means
	// DefaultMaxAge.
	MaxAge time.Duration
}

const (
	// DefaultRingBytes holds ~3,600 handshakes (72 bytes each) between two
	// lookups; the agent drains it at every probe.
	DefaultRingBytes = 256 << 10
	// DefaultMaxAge is well beyond a probe's run time (probe.MaxRunTime).
	DefaultMaxAge = time.Minute
)

var (
	// ErrPermission: the process lacks the capabilities to load or attach the
	// program. The error text names the missing ones.
	ErrPermission = errors.New("missing privileges")
	// ErrNotSupported: the OS or kernel lacks a feature the collector needs
	// (Linux, cgroup v2, cgroup BPF, BPF ring buffers).
	ErrNotSupported = errors.New("not supported")
)

// Conn is what the kernel recorded when one of the observed cgroup's
// connections completed its handshake.
type Conn struct {
	// Cookie is the socket's cookie, as getsockopt(SO_COOKIE) returns it.
	Cookie        uint64
	Local, Remote netip.AddrPort
	// SRTT is the smoothed RTT after the handshake, truncated to whole
	// microseconds like TCP_INFO's tcpi_rtt; 0 when the kernel took no sample
	// (Karn's rule: a retransmitted SYN gives none without timestamps).
	SRTT time.Duration
	// MinRTT is the lowest RTT the kernel has seen on the connection.
	MinRTT time.Duration
	// Retrans counts the SYNs retransmitted before the handshake completed.
	Retrans uint32
}

// Sample turns c into the probe result's kernel RTT.
func (c Conn) Sample() kernelrtt.Sample {
	if c.SRTT <= 0 {
		return kernelrtt.Sample{Unavailable: "the kernel took no RTT sample during the handshake (SYN retransmitted)"}
	}
	return kernelrtt.Sample{RTT: c.SRTT, Source: kernelrtt.SourceEBPF}
}

// Stats are the collector's counters since Open.
type Stats struct {
	// Events is how many handshakes the kernel reported.
	Events uint64
	// Lost is how many the kernel dropped because the ring was full.
	Lost uint64
	// Matched, Ambiguous and Missed count lookups: answered, refused because
	// two records fitted (or records were lost), and without a record.
	Matched, Ambiguous, Missed uint64
	// Pending is how many records wait in the table for a lookup.
	Pending int
}
