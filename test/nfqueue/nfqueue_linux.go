//go:build linux

package nfqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Delayer holds every packet of an NFQUEUE queue for a set time, then
// accepts it, and records the hold it applied to each. It speaks
// nfnetlink_queue directly (config: bind + copy metadata only; per packet: an
// NF_ACCEPT verdict by id). The hold can be changed while it runs.
//
// Held packets are released in arrival order by one thread that sleeps with
// clock_nanosleep and a timer slack of 1 ns: the Go runtime's timers wake
// through epoll_wait in whole milliseconds and fired 0.2-0.4 ms late, with a
// spread that made the median of (path + hold) differ from the median path
// plus the median hold. A hold is recorded up to the verdict's send: the time
// the send itself takes is the kernel carrying the packet on (for a SYN, the
// SYN-ACK too), which the path pays at every hold, 0 included.
type Delayer struct {
	fd      int
	queue   uint16
	holdNS  atomic.Int64
	holdsMu sync.Mutex
	holds   []time.Duration // applied holds since the last TakeHolds
	stop    atomic.Bool
	done    chan struct{}
	pending chan heldPacket // to the releaser, in arrival order
	held    atomic.Int64
	writeMu sync.Mutex
	err     error
}

// heldPacket is a queued packet's id, when it was read and when it is due.
type heldPacket struct {
	id           uint32
	arrived, due time.Time
}

// Held is the number of packets held so far.
func (d *Delayer) Held() int64 { return d.held.Load() }

const (
	nfnlSubsysQueue     = 3
	nfqnlMsgPacket      = 0
	nfqnlMsgVerdict     = 1
	nfqnlMsgConfig      = 2
	nfqaCfgCmd          = 1
	nfqaCfgParams       = 2
	nfqaPacketHdr       = 1
	nfqaVerdictHdr      = 2
	nfqnlCfgCmdBind     = 1
	nfqnlCopyMeta       = 1
	nfAccept            = 1
	nlmsgHdrLen         = 16
	nfgenmsgLen         = 4
	netlinkRecvTimeoutM = 50 * time.Millisecond
)

// Start binds queue in the network namespace ns (a name under /run/netns)
// and holds every packet for hold.
func Start(ns string, queue uint16, hold time.Duration) (*Delayer, error) {
	d := &Delayer{queue: queue, done: make(chan struct{}), pending: make(chan heldPacket, 4096)}
	d.holdNS.Store(int64(hold))
	err := InNetns(ns, func() (err error) {
		d.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	if err := unix.Bind(d.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(d.fd)
		return nil, err
	}
	tv := unix.NsecToTimeval(netlinkRecvTimeoutM.Nanoseconds())
	_ = unix.SetsockoptTimeval(d.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET}
	params := binary.BigEndian.AppendUint32(nil, 0xffff) // copy range (unused with metadata only)
	params = append(params, nfqnlCopyMeta)
	if err := d.request(nfqnlMsgConfig, unix.NLM_F_ACK, attr(nfqaCfgCmd, cmd), attr(nfqaCfgParams, params)); err != nil {
		unix.Close(d.fd)
		return nil, fmt.Errorf("binding queue %d: %w", queue, err)
	}
	released := make(chan struct{})
	go d.release(released)
	go func() { d.run(); close(d.pending); <-released; close(d.done) }()
	return d, nil
}

func attr(typ uint16, data []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (d *Delayer) send(msgType uint16, flags uint16, attrs ...[]byte) error {
	body := []byte{unix.AF_UNSPEC, 0, 0, 0}
	binary.BigEndian.PutUint16(body[2:], d.queue)
	for _, a := range attrs {
		body = append(body, a...)
	}
	msg := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, nfnlSubsysQueue<<8|msgType)
	msg = binary.NativeEndian.AppendUint16(msg, unix.NLM_F_REQUEST|flags)
	msg = binary.NativeEndian.AppendUint32(msg, 0) // seq
	msg = binary.NativeEndian.AppendUint32(msg, 0) // pid: the kernel
	msg = append(msg, body...)
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	return unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// request sends a message and waits for its netlink ACK.
func (d *Delayer) request(msgType uint16, flags uint16, attrs ...[]byte) error {
	if err := d.send(msgType, flags, attrs...); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(d.fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
	return errors.New("no netlink ACK")
}

func (d *Delayer) run() {
	buf := make([]byte, 64<<10)
	for !d.stop.Load() {
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			d.err = err
			return
		}
		arrived := time.Now()
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != nfnlSubsysQueue<<8|nfqnlMsgPacket || len(m.Data) < nfgenmsgLen {
				continue
			}
			id, ok := packetID(m.Data[nfgenmsgLen:])
			if !ok {
				continue
			}
			d.held.Add(1)
			hold := time.Duration(d.holdNS.Load())
			if hold <= 0 && len(d.pending) == 0 {
				d.accept(heldPacket{id: id, arrived: arrived}) // nothing ahead of it: no hand-over
				continue
			}
			d.pending <- heldPacket{id: id, arrived: arrived, due: arrived.Add(hold)}
		}
	}
}

// release accepts held packets when due, in arrival order, on a thread of
// its own with a fine timer slack, until pending is closed.
func (d *Delayer) release(done chan<- struct{}) {
	defer close(done)
	// The slack is per thread. The thread must outlive this goroutine (see
	// InNetns: a process forked on it earlier with PR_SET_PDEATHSIG would be
	// killed when it ends; an e2e run lost an agent and Prometheus that way
	// when the delayers closed), so its slack is restored and it is unlocked.
	runtime.LockOSThread()
	if prev, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil {
		defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(prev), 0, 0, 0); runtime.UnlockOSThread() }()
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	} else {
		runtime.UnlockOSThread() // coarser holds, not a lost thread
	}
	for p := range d.pending {
		if wait := time.Until(p.due); wait > 0 {
			ts := unix.NsecToTimespec(wait.Nanoseconds())
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		d.accept(p)
	}
}

// accept sends p's verdict and records its hold.
func (d *Delayer) accept(p heldPacket) {
	held := time.Since(p.arrived)
	v := binary.BigEndian.AppendUint32(nil, nfAccept)
	v = binary.BigEndian.AppendUint32(v, p.id)
	_ = d.send(nfqnlMsgVerdict, 0, attr(nfqaVerdictHdr, v))
	d.holdsMu.Lock()
	d.holds = append(d.holds, held)
	d.holdsMu.Unlock()
}

func packetID(attrs []byte) (uint32, bool) {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & 0x3fff
		if l < 4 || l > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(attrs[4:]), true
		}
		attrs = attrs[(l+3)&^3:]
	}
	return 0, false
}

// SetHold changes the hold of packets that arrive from now on.
func (d *Delayer) SetHold(h time.Duration) { d.holdNS.Store(int64(h)) }

// Median is the median of ds (0 when empty): the ground truth compares a
// phase's median with the median hold.
func Median(ds []time.Duration) time.Duration { return Quantile(ds, 0.5) }

// Quantile is the q-quantile of ds (0 when empty), the sample at rank q*len.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// TakeHolds returns the holds applied since the last call and forgets them.
func (d *Delayer) TakeHolds() []time.Duration {
	d.holdsMu.Lock()
	defer d.holdsMu.Unlock()
	h := d.holds
	d.holds = nil
	return h
}

// InNetns runs f on a thread switched to network namespace name, then
// switches the thread back and unlocks it. The thread must not exit: the
// harness starts its processes with PR_SET_PDEATHSIG, which fires when the
// forking *thread* ends, and Go may have forked one of them on this thread.
// Only if switching back fails is the thread left locked (and so ended).
func InNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err)) // thread stays locked and ends
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close stops reading, lets held packets go and releases the queue.
func (d *Delayer) Close() error {
	d.stop.Store(true)
	<-d.done
	return errors.Join(d.err, unix.Close(d.fd))
}
