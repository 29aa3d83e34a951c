package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A kubelet node's container runtime: containerd 2.x (build.sh) with
// Debian's runc and CNI plugins, every file of it under the node's Kubelet.Dir:
//
//	containerd/config.toml        written by writeContainerdConfig
//	containerd/root, state        containerd's root and state (netns mounts under state/netns)
//	containerd/containerd.sock    CRI and containerd API (ctr -a)
//	runc/                         runc's state (--root)
//	cni/net.d, cni/ipam           CNI config and host-local's allocations
//
// The shims put their sockets in /run/containerd/s/<hash of this address>,
// a path containerd does not let a config move; they remove them on exit.

// containerdNamespace is the containerd namespace the CRI plugin uses.
const containerdNamespace = "k8s.io"

// Debian's runc and CNI plugins (apt-get install runc containernetworking-plugins).
const (
	defaultRunc      = "/usr/sbin/runc"
	defaultCNIBinDir = "/usr/lib/cni"
)

func (k *Kubelet) containerdDir() string { return filepath.Join(k.Dir, "containerd") }

// ContainerdSocket is the runtime's gRPC socket (CRI and containerd's API).
func (k *Kubelet) ContainerdSocket() string {
	return filepath.Join(k.containerdDir(), "containerd.sock")
}

// containerdConfig renders config.toml (version 3, containerd 2.x). The
// sandbox (pause) image is pinned, so the kubelet's image GC keeps it and
// nothing tries to pull it: no registry is reachable.
func (k *Kubelet) containerdConfig() string {
	d := k.containerdDir()
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	return strings.Join([]string{
		`version = 3`,
		`root = ` + q(filepath.Join(d, "root")),
		`state = ` + q(filepath.Join(d, "state")),
		`disabled_plugins = ["io.containerd.nri.v1.nri"]`,
		``,
		`[grpc]`,
		`  address = ` + q(k.ContainerdSocket()),
		`[ttrpc]`,
		`  address = ` + q(k.ContainerdSocket()+".ttrpc"),
		`[debug]`,
		`  address = ""`,
		`  level = "info"`,
		`[metrics]`,
		`  address = ""`,
		``,
		`[plugins.'io.containerd.internal.v1.opt']`,
		`  path = ` + q(filepath.Join(d, "opt")),
		`[plugins.'io.containerd.cri.v1.images']`,
		`  snapshotter = "overlayfs"`,
		`  [plugins.'io.containerd.cri.v1.images'.pinned_images]`,
		`    sandbox = ` + q(k.SandboxImage),
		`[plugins.'io.containerd.cri.v1.runtime']`,
		`  enable_selinux = false`,
		`  disable_apparmor = true`,
		// Root here lacks CAP_SYS_RESOURCE, so nothing may lower an
		// oom_score_adj: the kubelet's -998 for sandboxes made runc fail
		// ("failed to update /proc/self/oom_score_adj: Permission
		// denied"). Clamp to containerd's own instead.
		`  restrict_oom_score_adj = true`,
		// The sandboxes' network namespaces stay under the node's own state
		// directory instead of the host's /var/run/netns.
		`  netns_mounts_under_state_dir = true`,
		`  cdi_spec_dirs = []`,
		`  [plugins.'io.containerd.cri.v1.runtime'.containerd]`,
		`    default_runtime_name = "runc"`,
		`    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]`,
		`        BinaryName = ` + q(k.cfg.Runc),
		`        Root = ` + q(filepath.Join(k.Dir, "runc")),
		`        SystemdCgroup = false`,
		`  [plugins.'io.containerd.cri.v1.runtime'.cni]`,
		`    bin_dirs = [` + q(k.cfg.CNIBinDir) + `]`,
		`    conf_dir = ` + q(filepath.Join(k.Dir, "cni", "net.d")),
		`    max_conf_num = 1`,
		`[plugins.'io.containerd.grpc.v1.cri']`,
		`  disable_tcp_service = true`,
		// The kubelet, in the same network namespace, proxies exec and logs
		// streams to this listener.
		`  stream_server_address = "127.0.0.1"`,
		`  stream_server_port = "0"`,
		``,
	}, "\n")
}

// cniConfig is the node's pod network as the harness builds it by hand for
// its own pods (pod.go): a veth on the node's bridge cbr0 with hairpin on, the
// bridge's address as default gateway, no masquerade (pod IPs are routed).
// host-local hands out the upper half of the pod CIDR, so pods the harness
// creates on the same node (from the bottom) never collide with these.
func (k *Kubelet) cniConfig() (string, error) {
	first, last, err := upperHalf(k.Node.PodCIDR)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", k.Node.Name, err)
	}
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cbr0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, k.c.cfg.Prefix+"-pods", filepath.Join(k.Dir, "cni", "ipam"), k.Node.PodCIDR.Masked().String(),
		first, last, k.Node.Gateway), nil
}

// startContainerd starts containerd inside the node's network namespace and
// in a mount namespace of its own (slave of the host's: host mounts show,
// the runtime's do not leak out), which the kubelet joins so both see the
// same volume and sandbox mounts. That namespace also shows the kubelet the
// kernel settings it insists on (see kernelTunables) without changing the
// host's. Returns when the CRI plugin is serving.
func (k *Kubelet) startContainerd(ctx context.Context) error {
	d := k.containerdDir()
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(k.containerdConfig()), 0o644); err != nil {
		return err
	}
	script := "set -e\n"
	for path, value := range kernelTunables {
		f := filepath.Join(k.Dir, "sysctl", strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", "."))
		if err := os.WriteFile(f, []byte(value+"\n"), 0o644); err != nil {
			return err
		}
		script += fmt.Sprintf("mount --bind %q %q\n", f, path)
	}
	script += `exec "$0" "$@"`
	argv := []string{
		"nsenter", "--net=" + netnsPath(k.Node.NetNS), "--",
		"unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", script,
		filepath.Join(k.c.cfg.BinDir, "containerd"), "--config", filepath.Join(d, "config.toml"),
	}
	argv = append(argv, k.cfg.ContainerdArgs...)
	p, err := startProcess("containerd", filepath.Join(k.c.cfg.WorkDir, "logs", k.Node.Name, "containerd.log"), "", k.env(), argv)
	if err != nil {
		return err
	}
	k.Node.procs.add(p)
	k.Containerd = p
	return waitFor(ctx, p, time.Minute, "containerd CRI plugin serving", func(ctx context.Context) error {
		out, err := k.ctr(ctx, "plugins", "ls")
		if err != nil {
			return err
		}
		return criPluginStatus(out)
	})
}

// criPluginStatus reads `ctr plugins ls` and says whether the CRI plugin
// loaded; a plugin that failed to load says so in containerd's log.
func criPluginStatus(out string) error {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// TYPE ID PLATFORMS STATUS; PLATFORMS may be "-".
		if len(f) >= 3 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
			if status := f[len(f)-1]; status != "ok" {
				return fmt.Errorf("containerd's CRI plugin is %q (see the containerd log)", status)
			}
			return nil
		}
	}
	return errors.New("containerd lists no CRI plugin (io.containerd.grpc.v1 cri) yet")
}

// ctr runs ctr against the node's containerd in the CRI's namespace.
func (k *Kubelet) ctr(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{filepath.Join(k.c.cfg.BinDir, "ctr"), "--address", k.ContainerdSocket(), "--namespace", containerdNamespace}, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ImportImage imports an OCI layout tar (WriteImage's, or `make
// image-linux`'s) into the node's runtime, where the CRI sees it, and
// unpacks it for the snapshotter the CRI uses. It runs inside the runtime's
// mount namespace: the unpacked layers are mounted there.
func (k *Kubelet) ImportImage(ctx context.Context, tarPath string) error {
	if _, err := os.Stat(tarPath); err != nil {
		return fmt.Errorf("node %s: import image: %w", k.Node.Name, err)
	}
	argv := []string{"nsenter", "--mount=" + k.mountNS(), "--",
		filepath.Join(k.c.cfg.BinDir, "ctr"), "--address", k.ContainerdSocket(), "--namespace", containerdNamespace,
		"images", "import", "--local", "--platform", "linux/amd64", "--snapshotter", "overlayfs", tarPath}
	if _, err := run(ctx, argv...); err != nil {
		return fmt.Errorf("node %s: import image %s: %w", k.Node.Name, filepath.Base(tarPath), err)
	}
	return nil
}

// Images lists the image names the node's runtime holds.
func (k *Kubelet) Images(ctx context.Context) ([]string, error) {
	out, err := k.ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func netnsPath(ns string) string { return filepath.Join("/run/netns", ns) }
