//go:build !linux || !(amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"fmt"
	"net/netip"
	"runtime"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// Collector is unavailable here: Open always fails.
type Collector struct{}

// Open reports that the eBPF collector needs Linux on a 64-bit little-endian CPU.
func Open(Options) (*Collector, error) {
	return nil, fmt.Errorf("ebpf: kernel RTT collector is unsupported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, ErrNotSupported)
}

func (*Collector) Cgroup() string { return "" }
func (*Collector) Mark() uint64   { return 0 }
func (*Collector) Lookup(netip.AddrPort, uint64) (kernelrtt.Sample, bool) {
	return kernelrtt.Sample{}, false
}
func (*Collector) Handshake(netip.AddrPort, uint64) (Conn, bool) { return Conn{}, false }
func (*Collector) Stats() Stats                                  { return Stats{} }
func (*Collector) Close() error                                  { return nil }
