//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring reads a BPF ring buffer through its memory mapping, like libbpf's
// ring_buffer__consume: no epoll, no syscall. cilium/ebpf's ringbuf.Reader
// waits in epoll_wait before every batch, which is the syscall per probe this
// package exists to avoid.
//
// Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (written
// by us), page 1 the producer position, then the data pages, mapped twice in a
// row so a record that wraps reads contiguously. Each record starts with an
// 8-byte header whose first word is its length plus the busy and discard bits;
// records are 8-byte aligned.
type ring struct {
	cons, data []byte // the two mappings
	consPos    *uint64
	prodPos    *uint64
	buf        []byte // data pages, twice
	mask       uint64
}

const (
	ringHeader  = 8
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
)

func openRing(fd, size int) (*ring, error) {
	page := os.Getpagesize()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap ring consumer page: %w", err)
	}
	data, err := unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(cons)
		return nil, fmt.Errorf("mmap ring data pages: %w", err)
	}
	return &ring{
		cons: cons, data: data,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*uint64)(unsafe.Pointer(&data[0])),
		buf:     data[page:],
		mask:    uint64(size - 1),
	}, nil
}

// producer is the position the next record will be reserved at.
func (r *ring) producer() uint64 { return atomic.LoadUint64(r.prodPos) }

// busyWait bounds how long drain waits for a record reserved but not yet
// submitted (a BPF program preempted between the two, or running on another
// CPU); records behind it stay for the next drain.
const busyWait = 200 * time.Microsecond

// drain calls f with the position and payload of every committed record, in
// order, and releases them. The payload aliases the ring: f must copy it.
func (r *ring) drain(f func(pos uint64, rec []byte)) {
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	var busySince time.Time
	for spins := 0; cons < prod; {
		// An atomic load of the header orders it after the kernel's xchg
		// that clears the busy bit, so the payload is visible.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.buf[cons&r.mask])))
		if hdr&ringBusy != 0 {
			if spins++; spins&63 == 0 {
				if busySince.IsZero() {
					busySince = time.Now()
				} else if time.Since(busySince) > busyWait {
					break
				}
				runtime.Gosched()
			}
			continue
		}
		n := uint64(hdr &^ (ringBusy | ringDiscard))
		if hdr&ringDiscard == 0 {
			start := (cons + ringHeader) & r.mask
			f(cons, r.buf[start:start+n])
		}
		cons += (ringHeader + n + 7) &^ 7
		atomic.StoreUint64(r.consPos, cons)
		if cons == prod {
			prod = atomic.LoadUint64(r.prodPos)
		}
	}
}

func (r *ring) close() error {
	err1 := unix.Munmap(r.data)
	err2 := unix.Munmap(r.cons)
	if err1 != nil {
		return err1
	}
	return err2
}
