package residency

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestReadOnlyMappingOf(t *testing.T) {
	dev := unix.Mkdev(0xfe, 0x00)
	const ino = 10608759
	for _, tc := range []struct {
		line   string
		lo, hi uintptr
		ok     bool
	}{
		{"00400000-01427000 r-xp 00000000 fe:00 10608759   /usr/bin/xosprobe", 0x400000, 0x1427000, true},
		{"01427000-02530000 r--p 01027000 fe:00 10608759   /usr/bin/xosprobe (deleted)", 0x1427000, 0x2530000, true},
		{"02530000-025ca000 rw-p 02130000 fe:00 10608759   /usr/bin/xosprobe", 0, 0, false}, // data: written to
		{"00400000-01427000 r-xp 00000000 fe:01 10608759   /other/disk", 0, 0, false},
		{"00400000-01427000 r-xp 00000000 fe:00 42         /usr/lib/other", 0, 0, false},
		{"7ffd1000-7ffd3000 r-xp 00000000 00:00 0          [vdso]", 0, 0, false},
		{"c000000000-c004000000 rw-p 00000000 00:00 0", 0, 0, false},
		{"garbage", 0, 0, false},
		{"01427000-01000000 r--p 01027000 fe:00 10608759   /usr/bin/xosprobe", 0, 0, false}, // end before start
	} {
		lo, hi, ok := readOnlyMappingOf(tc.line, dev, ino)
		assert.Equal(t, tc.ok, ok, tc.line)
		assert.Equal(t, tc.lo, lo, tc.line)
		assert.Equal(t, tc.hi, hi, tc.line)
	}
}

// fileRSS reads RssFile of this process, in kB.
func fileRSS(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseStartupPagesShrinksResidentFilePages(t *testing.T) {
	before := fileRSS(t)
	n, err := ReleaseStartupPages()
	require.NoError(t, err)
	after := fileRSS(t)
	assert.Positive(t, n, "the test binary's own read-only mappings were found")
	assert.Less(t, after, before, "resident file pages: %d kB before, %d kB after", before, after)
	t.Logf("mappings covered %d KiB; RssFile %d -> %d kB", n>>10, before, after)
	// The process keeps running on the pages it faults back.
	_, err = ReleaseStartupPages()
	require.NoError(t, err)
}
