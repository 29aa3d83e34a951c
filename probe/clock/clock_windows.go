package clock

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	kernel32                      = windows.NewLazySystemDLL("kernel32.dll")
	procQueryPerformanceCounter   = kernel32.NewProc("QueryPerformanceCounter")
	procQueryPerformanceFrequency = kernel32.NewProc("QueryPerformanceFrequency")
)

// QPC reads QueryPerformanceCounter, the clock Windows documents for
// sub-microsecond interval timing.
type QPC struct{ freq int64 }

var (
	qpcOnce sync.Once
	qpc     Clock
)

func defaultClock() Clock {
	qpcOnce.Do(func() {
		c, err := NewQPC()
		if err != nil {
			qpc = Monotonic{} // QPC cannot fail on XP and later; keep running if it somehow does
			return
		}
		qpc = c
	})
	return qpc
}

// NewQPC returns a QPC clock, reading the counter frequency once.
func NewQPC() (QPC, error) {
	var f int64
	if r, _, err := procQueryPerformanceFrequency.Call(uintptr(unsafe.Pointer(&f))); r == 0 {
		return QPC{}, err
	}
	return QPC{freq: f}, nil
}

func (q QPC) Now() Instant {
	var t int64
	procQueryPerformanceCounter.Call(uintptr(unsafe.Pointer(&t))) //nolint:errcheck // cannot fail after NewQPC succeeded
	// Split the conversion so ticks*1e9 cannot overflow int64.
	sec, rem := t/q.freq, t%q.freq
	return Instant(sec*1e9 + rem*1e9/q.freq)
}

func (QPC) Name() string { return "qpc" }
