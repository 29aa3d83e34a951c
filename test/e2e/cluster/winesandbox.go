package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A Windows pod under Wine is made as close to a nanoserver container as
// Wine allows:
//
//   - its prefix (an overlay on the template) has no drive but C:: the
//     template's Z: (the Linux root) and any other dosdevices entry are
//     removed in the overlay, so the template keeps Z: for `make test-windows`;
//   - Wine runs chrooted into a Unix root of the pod's own, built in the
//     mount namespace `ip netns exec` creates (gone with the pod's last
//     process): read-only /usr (with the /bin, /lib, /lib64, /sbin links of a
//     merged-/usr host, or bind mounts where they are directories) because
//     Wine's Unix half loads from there; an /etc holding only the files the
//     dynamic loader, libc's resolver and Wine read (wineEtcFiles); /dev with
//     null, zero, full, random, urandom and tty; proc and sys; the pod's
//     prefix and TMPDIR. Wine's \\?\unix\ paths reach this root, not the host's;
//   - every capability is dropped before Wine starts (as the manifests'
//     `capabilities: drop: [ALL]`), so /proc/<pid>/root of a process that
//     keeps them (the host's init, the harness) cannot be followed;
//   - the binary runs from the image's layout: a host .exe given as Args[0]
//     is copied to C:\<name>\<name>.exe (C:\xosprobe\xosprobe.exe, as
//     Dockerfile.windows puts it), that directory is on the Windows PATH
//     (WINEPATH), and the working directory is C:\.

// wineEtcFiles are the /etc entries a Wine pod's root gets, copied from the
// pod's view of /etc (so resolv.conf and hosts are the pod's): the loader's
// cache, libc's name service and resolver configuration (Wine's
// GetAddrInfoW and its adapters' DNS servers come from them), the time
// zone, fontconfig (Wine's font setup) and the alternatives links
// /usr/bin/wine resolves through. passwd and group are written with one
// line each (Wine looks its user up), not copied.
var wineEtcFiles = []string{
	"ld.so.cache", "nsswitch.conf", "host.conf", "gai.conf", "resolv.conf", "hosts",
	"localtime", "fonts", "alternatives",
}

// wineSandboxScript runs in the pod's mount namespace (ip netns exec made it)
// as root, builds the root and execs the rest of its arguments in it.
// Arguments: root prefix tmp cwd etc-entries... -- command...
const wineSandboxScript = `set -eu
root=$1 prefix=$2 tmp=$3 cwd=$4; shift 4
mount -t tmpfs -o mode=0755,size=16m xne2e-wineroot "$root"
cd "$root"
mkdir etc dev proc sys tmp
ro_bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
ro_bind /usr usr
for d in bin lib lib64 sbin; do
	if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$d"
	elif [ -d "/$d" ]; then ro_bind "/$d" "$d"; fi
done
while [ "$1" != -- ]; do
	if [ -e "/etc/$1" ]; then cp -a "/etc/$1" etc/; fi
	shift
done
shift
# Wine looks its user up; a container's user database is not the host's.
echo "root:x:0:0:root:/tmp:/usr/sbin/nologin" >etc/passwd
echo "root:x:0:" >etc/group
for n in null zero full random urandom tty; do touch "dev/$n"; mount --bind "/dev/$n" "dev/$n"; done
mkdir dev/shm; mount -t tmpfs -o mode=1777 xne2e-wineshm dev/shm
ln -s /proc/self/fd dev/fd
mount -t proc proc proc
ro_bind /sys sys
mount --bind "$tmp" tmp
mkdir -p ".$prefix"; mount --bind "$prefix" ".$prefix"
exec chroot "$root" setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- env -C "$cwd" "$@"
`

// wineCommand wraps args (wine and its program) for the pod's sandbox and
// returns the environment Wine needs there.
func (p *Pod) wineCommand(prefix string, args []string) (argv, env []string, err error) {
	if len(args) == 0 {
		return nil, nil, errors.New("exec: no command")
	}
	exe := args[0]
	if filepath.IsAbs(exe) { // a host path: install it as the image does
		if exe, err = p.installWineExe(prefix, exe); err != nil {
			return nil, nil, err
		}
	}
	dir, _, ok := strings.Cut(strings.TrimPrefix(strings.ToUpper(exe), `C:\`), `\`)
	if !ok || !strings.HasPrefix(strings.ToUpper(exe), `C:\`) {
		return nil, nil, fmt.Errorf("wine exec %q: want a C:\\ path (or a host .exe to install)", args[0])
	}
	if _, err := os.Stat(p.hostPath(prefix, exe)); err != nil {
		return nil, nil, fmt.Errorf("wine exec %s: not in pod %s's C: drive: %w", exe, p, err)
	}
	base := filepath.Dir(prefix)
	root, tmp := filepath.Join(base, "root"), filepath.Join(base, "tmp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, nil, err
	}
	argv = []string{"sh", "-c", wineSandboxScript, "wine-sandbox", root, prefix, tmp, filepath.Join(prefix, "drive_c")}
	argv = append(argv, wineEtcFiles...)
	argv = append(argv, "--", "wine", exe)
	argv = append(argv, args[1:]...)
	env = []string{
		"WINEPREFIX=" + prefix, "TMPDIR=/tmp", "HOME=/tmp", "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=",
		// Wine builds the Windows PATH from the registry and WINEPATH.
		`WINEPATH=C:\` + strings.ToLower(dir),
	}
	return argv, env, nil
}

// installWineExe copies a host .exe to C:\<name>\<name>.exe in the pod's
// C: drive, once per pod.
func (p *Pod) installWineExe(prefix, hostExe string) (string, error) {
	name := strings.TrimSuffix(filepath.Base(hostExe), filepath.Ext(hostExe))
	win := `C:\` + name + `\` + filepath.Base(hostExe)
	dst := p.hostPath(prefix, win)
	if _, err := os.Stat(dst); err == nil {
		return win, nil
	}
	b, err := os.ReadFile(hostExe)
	if err != nil {
		return "", fmt.Errorf("installing %s into pod %s: %w", hostExe, p, err)
	}
	if err := writeFileAll(dst, b, 0o755); err != nil {
		return "", fmt.Errorf("installing %s into pod %s: %w", hostExe, p, err)
	}
	return win, nil
}

// hostPath is where a C:\ path of the pod's prefix lives on the host.
func (p *Pod) hostPath(prefix, win string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(win, `C:`), `c:`)
	return filepath.Join(prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/")))
}

// WriteWineFile writes data at a C:\ path of a Windows pod's C: drive, as a
// kubelet's volume mount would place it (C:\var\run\secrets\...).
func (c *Cluster) WriteWineFile(p *Pod, win string, data []byte) error {
	if p.Node.OS != Windows {
		return fmt.Errorf("pod %s is not on a Windows node", p)
	}
	if !strings.HasPrefix(strings.ToUpper(win), `C:\`) {
		return fmt.Errorf("pod %s: %q is not a C:\\ path", p, win)
	}
	prefix, err := p.wine()
	if err != nil {
		return err
	}
	return writeFileAll(p.hostPath(prefix, win), data, 0o644)
}

func writeFileAll(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, perm)
}

// dropHostDrives removes every dosdevices entry of the pod's prefix but c:
// (in the overlay: the template keeps them), so no drive maps a host path.
func dropHostDrives(prefix string) error {
	dir := filepath.Join(prefix, "dosdevices")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wine prefix %s: %w", prefix, err)
	}
	var errs []error
	for _, e := range entries {
		if strings.EqualFold(e.Name(), "c:") {
			continue
		}
		errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
