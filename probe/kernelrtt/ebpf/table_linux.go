//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"net/netip"
	"time"
)

// table holds the handshakes drained from the ring until a probe takes its
// own. Not safe for concurrent use: the Collector's mutex guards it.
type table struct {
	maxAge    time.Duration
	slots     map[netip.AddrPort]*slot
	pending   int
	lastPrune time.Duration
	// lossPos is the ring position when the kernel was last seen to have
	// dropped a record (ring full); see take.
	lossPos  uint64
	lossSeen bool
}

// perRemote bounds the records kept per remote address. Only the newest
// record of a remote can ever be the single candidate of a lookup (every
// newer record is a candidate too), and two kept records already make a
// lookup ambiguous, so dropping older ones never turns an answer into a
// wrong one; it can only turn a rare late match into a miss.
const perRemote = 4

// slot holds a remote's records in ring order. Slots outlive their records
// until pruned, so a peer probed every few seconds costs no allocation.
type slot struct {
	recs [perRemote]record
	n    int
	last time.Duration // when the newest record arrived
}

type record struct {
	pos  uint64        // ring position: increases with every record
	seen time.Duration // on the table's clock (the Collector's epoch)
	conn Conn
}

func newTable(maxAge time.Duration) table {
	return table{maxAge: maxAge, slots: map[netip.AddrPort]*slot{}}
}

// add files a record; positions must not decrease.
func (t *table) add(pos uint64, now time.Duration, c Conn) {
	sl := t.slots[c.Remote]
	if sl == nil {
		sl = &slot{}
		t.slots[c.Remote] = sl
	}
	if sl.n == perRemote {
		copy(sl.recs[:], sl.recs[1:])
		sl.n--
		t.pending--
	}
	sl.recs[sl.n] = record{pos: pos, seen: now, conn: c}
	sl.n++
	sl.last = now
	t.pending++
}

type takeResult int

const (
	missed takeResult = iota
	matched
	ambiguous
)

// noteLoss records that the kernel dropped records before the ring reached
// position pos.
func (t *table) noteLoss(pos uint64) { t.lossPos, t.lossSeen = pos, true }

// take removes and returns the one record for remote at or after mark. With
// two or more such records, or when a loss was noticed at a position at or
// after the mark (the lost record may have been this connection's, and the
// one candidate another's), it takes nothing and says ambiguous. A loss is
// noticed at the first drain after it, whose position is at least that of
// every mark taken before the loss: so a loss after the mark is always
// caught, and one just before it is (harmlessly) caught too.
func (t *table) take(remote netip.AddrPort, mark uint64) (Conn, takeResult) {
	sl := t.slots[remote]
	if sl == nil || sl.n == 0 || sl.recs[sl.n-1].pos < mark {
		return Conn{}, missed
	}
	if (sl.n > 1 && sl.recs[sl.n-2].pos >= mark) || (t.lossSeen && t.lossPos >= mark) {
		return Conn{}, ambiguous
	}
	sl.n--
	t.pending--
	return sl.recs[sl.n].conn, matched
}

// maybePrune drops records older than maxAge, at most every maxAge/4.
func (t *table) maybePrune(now time.Duration) {
	if now-t.lastPrune <= t.maxAge/4 {
		return
	}
	t.lastPrune = now
	for k, sl := range t.slots {
		old := 0
		for old < sl.n && now-sl.recs[old].seen > t.maxAge {
			old++
		}
		if old > 0 {
			copy(sl.recs[:], sl.recs[old:sl.n])
			sl.n -= old
			t.pending -= old
		}
		if sl.n == 0 && now-sl.last > t.maxAge {
			delete(t.slots, k)
		}
	}
}
