//go:build linux && (amd64 || arm64 || loong64 || mips64le || ppc64le || riscv64)

package ebpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ownCgroup returns the directory of this process's cgroup v2, and whether it
// is the root of the hierarchy (the host's, not a cgroup namespace's).
func ownCgroup() (dir string, root bool, err error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	dir, err = resolveCgroup(cg, mi)
	if err != nil {
		return "", false, err
	}
	root, err = isHierarchyRoot(dir)
	return dir, root, err
}

// resolveCgroup finds the directory of the unified-hierarchy ("0::") entry of
// /proc/self/cgroup under a cgroup2 mount listed in /proc/self/mountinfo. In
// a container the mount's root is the container's own cgroup (a cgroup
// namespace shows "0::/"; without one the runtime bind-mounts the subtree),
// so the path is taken relative to that root.
func resolveCgroup(procCgroup, mountinfo []byte) (string, error) {
	var path string
	found := false
	for line := range bytes.Lines(procCgroup) {
		if p, ok := strings.CutPrefix(strings.TrimRight(string(line), "\n"), "0::"); ok {
			path, found = p, true
			break
		}
	}
	if !found {
		return "", fmt.Errorf("this process has no cgroup v2 (no 0:: line in /proc/self/cgroup; cgroup v1 only): %w", ErrNotSupported)
	}
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	sawMount := false
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		sawMount = true
		mroot, mpoint := unescapeMount(fields[3]), unescapeMount(fields[4])
		rel, err := filepath.Rel(mroot, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue // this mount shows another part of the hierarchy
		}
		return filepath.Join(mpoint, rel), nil
	}
	if !sawMount {
		return "", fmt.Errorf("no cgroup2 file system is mounted (cgroup v1 only): %w", ErrNotSupported)
	}
	return "", fmt.Errorf("own cgroup %q is not visible under any cgroup2 mount: %w", path, ErrNotSupported)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isHierarchyRoot reports whether dir is a cgroup2 directory and the root of
// the whole hierarchy: its inode (the cgroup ID) is 1. A cgroup namespace's
// root is an ordinary cgroup with its own ID.
func isHierarchyRoot(dir string) (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return false, fmt.Errorf("%s is not a cgroup v2 directory: %w", dir, ErrNotSupported)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino == 1, nil
}

var errRootCgroup = errors.New("this process runs in the root cgroup: attaching there would observe every socket of the host; run the agent in its own cgroup (a container, a systemd unit) or name one in Options.Cgroup")
