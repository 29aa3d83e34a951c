//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// Collector holds the attached program and the handshakes it reported. Its
// methods are safe for concurrent use.
type Collector struct {
	cgroup string
	objs   rttObjects
	link   link.Link
	ring   *ring

	epoch time.Time // origin of the table's clock

	// mu guards everything below, and the ring mapping against Close.
	mu     sync.RWMutex
	closed bool
	table  table
	lost   uint64 // the kernel's lost counter at the last drain
	stats  Stats
}

// Open loads the sock_ops program, attaches it to the cgroup and maps its
// ring. The error says precisely why it could not, wrapping ErrPermission or
// ErrNotSupported where one applies.
func Open(opts Options) (*Collector, error) {
	if opts.RingBytes == 0 {
		opts.RingBytes = DefaultRingBytes
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if page := os.Getpagesize(); opts.RingBytes < page || opts.RingBytes&(opts.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ebpf: ring size %d must be a power of two of at least %d", opts.RingBytes, page)
	}
	dir := opts.Cgroup
	if dir == "" {
		var root bool
		var err error
		if dir, root, err = ownCgroup(); err != nil {
			return nil, fmt.Errorf("ebpf: finding the agent's cgroup: %w", err)
		}
		if root {
			return nil, fmt.Errorf("ebpf: %w", errRootCgroup)
		}
	} else if _, err := isHierarchyRoot(dir); err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	if err := checkCaps(); err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to
	// the cgroup, and this is a no-op.
	memlockErr := rlimit.RemoveMemlock()

	spec, err := loadRtt()
	if err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	spec.Maps[rttMapEvents].MaxEntries = uint32(opts.RingBytes)
	c := &Collector{cgroup: dir, epoch: time.Now(), table: newTable(opts.MaxAge)}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		err = explain("ebpf: loading the sock_ops program", err)
		if memlockErr != nil {
			err = fmt.Errorf("%w (and RLIMIT_MEMLOCK could not be lifted: %w)", err, memlockErr)
		}
		return nil, err
	}
	if c.ring, err = openRing(c.objs.Events.FD(), opts.RingBytes); err != nil {
		c.objs.Close()
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	c.link, err = link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: c.objs.RttSockops})
	if err != nil {
		c.ring.close()
		c.objs.Close()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("ebpf: attaching to cgroup %s: %w: %w (without CAP_NET_ADMIN, or a parent cgroup holds a sock_ops program that forbids others)", dir, ErrPermission, err)
		}
		return nil, explain("ebpf: attaching to cgroup "+dir, err)
	}
	return c, nil
}

// Cgroup is the cgroup v2 directory whose sockets are observed.
func (c *Collector) Cgroup() string { return c.cgroup }

// Mark is read just before connect(2): the ring position the connection's
// record will be at or after. One atomic load.
func (c *Collector) Mark() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return 0
	}
	return c.ring.producer()
}

// Lookup returns the kernel RTT of the connection to remote whose handshake
// completed after mark. false means no reading: none recorded (the socket is
// not in the cgroup, the kernel rewrote its address, or the ring was full) or
// more than one candidate. The caller then falls back to TCP_INFO.
func (c *Collector) Lookup(remote netip.AddrPort, mark uint64) (kernelrtt.Sample, bool) {
	conn, ok := c.Handshake(remote, mark)
	if !ok {
		return kernelrtt.Sample{}, false
	}
	return conn.Sample(), true
}

// Handshake is Lookup with everything the kernel recorded. The record is
// consumed: a second call for the same connection returns false.
func (c *Collector) Handshake(remote netip.AddrPort, mark uint64) (Conn, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Conn{}, false
	}
	c.drainLocked()
	conn, res := c.table.take(normalize(remote), mark)
	switch res {
	case matched:
		c.stats.Matched++
		return conn, true
	case ambiguous:
		c.stats.Ambiguous++
	default:
		c.stats.Missed++
	}
	return Conn{}, false
}

// Stats returns the counters, after reading what the ring holds.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.drainLocked()
	}
	s := c.stats
	s.Lost, s.Pending = c.lost, c.table.pending
	return s
}

// Close detaches the program and releases the ring.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return errors.Join(c.link.Close(), c.ring.close(), c.objs.Close())
}

// drainLocked moves the ring's records into the table and notes kernel-side
// losses.
func (c *Collector) drainLocked() {
	var now time.Duration
	c.ring.drain(func(pos uint64, b []byte) {
		if len(b) < int(unsafe.Sizeof(rttEvent{})) {
			return
		}
		if now == 0 {
			now = time.Since(c.epoch)
		}
		c.table.add(pos, now, decode((*rttEvent)(unsafe.Pointer(&b[0]))))
		c.stats.Events++
	})
	var lost uint64
	if err := c.objs.Lost.Get(&lost); err == nil && lost != c.lost {
		c.lost = lost
		c.table.noteLoss(c.ring.producer())
	}
	if now != 0 {
		c.table.maybePrune(now)
	}
}

func decode(ev *rttEvent) Conn {
	// The kernel's words hold network byte order in memory: reinterpret, do
	// not convert.
	v4 := func(a *uint32) netip.Addr { return netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(a))) }
	v6 := func(a *[4]uint32) netip.Addr { return netip.AddrFrom16(*(*[16]byte)(unsafe.Pointer(a))).Unmap() }
	local, remote := v4(&ev.LocalIp4), v4(&ev.RemoteIp4)
	if ev.Family == unix.AF_INET6 {
		local, remote = v6(&ev.LocalIp6), v6(&ev.RemoteIp6)
	}
	return Conn{
		Cookie:  ev.Cookie,
		Local:   netip.AddrPortFrom(local, ev.LocalPort),
		Remote:  netip.AddrPortFrom(remote, ev.RemotePort),
		SRTT:    time.Duration(ev.SrttUs8>>3) * time.Microsecond,
		MinRTT:  time.Duration(ev.RttMinUs) * time.Microsecond,
		Retrans: ev.TotalRetrans,
	}
}

// normalize makes a dialed address comparable with a recorded one: IPv4 in
// its 4-byte form, no IPv6 zone.
func normalize(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
