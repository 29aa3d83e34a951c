package residency

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseStartupPages drops this process's resident pages of its own
// executable's read-only mappings (code and read-only data, never the
// writable data segment) and asks the kernel to fault them back one page at a
// time. It returns how many bytes of mappings it covered.
func ReleaseStartupPages() (int64, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var ranges [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if lo, hi, ok := readOnlyMappingOf(sc.Text(), exe.Dev, exe.Ino); ok {
			ranges = append(ranges, [2]uintptr{lo, hi})
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read /proc/self/maps: %w", err)
	}
	var total int64
	for _, r := range ranges {
		// MADV_RANDOM first: without it a refault maps the 64 KiB around the
		// page again ("fault-around") and most of what was dropped returns.
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], uintptr(advice)); errno != 0 {
				return total, fmt.Errorf("madvise %#x-%#x: %w", r[0], r[1], errno)
			}
		}
		total += int64(r[1] - r[0])
	}
	return total, nil
}

// readOnlyMappingOf parses one /proc/self/maps line and reports the address
// range when it maps the file (dev, ino) without write permission.
func readOnlyMappingOf(line string, dev, ino uint64) (lo, hi uintptr, ok bool) {
	// 00400000-01427000 r-xp 00000000 fe:00 10608759   /usr/bin/xosprobe
	fields := strings.Fields(line)
	if len(fields) < 5 || len(fields[1]) < 2 || fields[1][1] == 'w' {
		return 0, 0, false
	}
	if n, err := strconv.ParseUint(fields[4], 10, 64); err != nil || n != ino {
		return 0, 0, false
	}
	major, minor, found := strings.Cut(fields[3], ":")
	mj, err1 := strconv.ParseUint(major, 16, 32)
	mn, err2 := strconv.ParseUint(minor, 16, 32)
	if !found || err1 != nil || err2 != nil || unix.Mkdev(uint32(mj), uint32(mn)) != dev {
		return 0, 0, false
	}
	start, end, found := strings.Cut(fields[0], "-")
	a, err1 := strconv.ParseUint(start, 16, 64)
	b, err2 := strconv.ParseUint(end, 16, 64)
	if !found || err1 != nil || err2 != nil || b <= a {
		return 0, 0, false
	}
	return uintptr(a), uintptr(b), true
}
