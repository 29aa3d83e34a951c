//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

func conn(remote string, rtt time.Duration) Conn {
	return Conn{Remote: netip.MustParseAddrPort(remote), SRTT: rtt}
}

func TestTableTake(t *testing.T) {
	const a, b = "10.0.0.1:80", "10.0.0.2:80"
	ra := netip.MustParseAddrPort(a)
	tb := newTable(time.Minute)
	tb.add(100, 1, conn(a, 10*time.Microsecond)) // before the mark
	tb.add(172, 1, conn(b, 20*time.Microsecond)) // another remote
	_, res := tb.take(ra, 150)
	assert.Equal(t, missed, res, "the only record for a precedes the mark")

	tb.add(244, 2, conn(a, 30*time.Microsecond))
	c, res := tb.take(ra, 150)
	assert.Equal(t, matched, res)
	assert.Equal(t, 30*time.Microsecond, c.SRTT, "the record after the mark, not the older one")
	_, res = tb.take(ra, 150)
	assert.Equal(t, missed, res, "taken once")

	tb.add(316, 3, conn(a, 40*time.Microsecond))
	tb.add(388, 3, conn(a, 50*time.Microsecond))
	_, res = tb.take(ra, 300)
	assert.Equal(t, ambiguous, res, "two connections to a since the mark")
	c, res = tb.take(ra, 350)
	assert.Equal(t, matched, res, "a later mark tells them apart")
	assert.Equal(t, 50*time.Microsecond, c.SRTT)

	tb.add(460, 4, conn(a, 60*time.Microsecond))
	tb.noteLoss(399)
	_, res = tb.take(ra, 400)
	assert.Equal(t, matched, res, "a loss noticed before the mark does not matter")
	tb.add(532, 5, conn(a, 70*time.Microsecond))
	tb.noteLoss(532)
	_, res = tb.take(ra, 500)
	assert.Equal(t, ambiguous, res, "a loss at or after the mark: the one candidate may be another's")
}

func TestTableBoundsAndPrunes(t *testing.T) {
	const a = "10.0.0.1:80"
	ra := netip.MustParseAddrPort(a)
	tb := newTable(time.Minute)
	for i := range 10 {
		tb.add(uint64(100+72*i), time.Second, conn(a, time.Duration(i)))
	}
	assert.Equal(t, perRemote, tb.pending, "only the newest records of a remote are kept")
	_, res := tb.take(ra, 100)
	assert.Equal(t, ambiguous, res, "dropping old records keeps an old mark ambiguous")
	c, res := tb.take(ra, 100+72*9)
	assert.Equal(t, matched, res)
	assert.EqualValues(t, 9, c.SRTT)

	tb.add(10000, 20*time.Second, conn("10.0.0.9:443", 0)) // nobody looks this one up
	tb.maybePrune(70 * time.Second)
	assert.Equal(t, 1, tb.pending, "records older than a minute are dropped")
	assert.NotContains(t, tb.slots, ra)
	tb.maybePrune(90 * time.Second)
	assert.Equal(t, 0, tb.pending)
	assert.Empty(t, tb.slots)
}

func TestDecode(t *testing.T) {
	ev := rttEvent{Cookie: 7, SrttUs8: 8*123 + 7, RttMinUs: 100, Family: 2, RemotePort: 9440, LocalPort: 40000}
	copy((*[4]byte)(unsafePointer(&ev.RemoteIp4))[:], []byte{10, 1, 2, 3})
	copy((*[4]byte)(unsafePointer(&ev.LocalIp4))[:], []byte{10, 1, 2, 4})
	c := decode(&ev)
	assert.Equal(t, netip.MustParseAddrPort("10.1.2.3:9440"), c.Remote)
	assert.Equal(t, netip.MustParseAddrPort("10.1.2.4:40000"), c.Local)
	assert.Equal(t, 123*time.Microsecond, c.SRTT, "srtt>>3 whole µs, like tcpi_rtt")
	assert.Equal(t, 123*time.Microsecond, c.Sample().RTT)
	assert.False(t, Conn{}.Sample().Available())
	assert.NotEmpty(t, Conn{}.Sample().Unavailable)

	ev = rttEvent{Family: 10, RemotePort: 80}
	copy((*[16]byte)(unsafePointer(&ev.RemoteIp6))[:], netip.MustParseAddr("fd00::1").AsSlice())
	assert.Equal(t, netip.MustParseAddrPort("[fd00::1]:80"), decode(&ev).Remote)
	copy((*[16]byte)(unsafePointer(&ev.RemoteIp6))[:], netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
	assert.Equal(t, netip.MustParseAddrPort("10.0.0.1:80"), decode(&ev).Remote, "v4-mapped on a dual-stack socket")
	assert.Equal(t, netip.MustParseAddrPort("10.0.0.1:80"), normalize(netip.MustParseAddrPort("[::ffff:10.0.0.1]:80")))
}

func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
