//go:build !windows

package clusterdns

import (
	"net/netip"
	"os"
)

const resolvConf = "/etc/resolv.conf"

// systemSource names what System reads on this OS.
const systemSource = SourceResolvConf

// System returns the first nameserver of /etc/resolv.conf, which the kubelet
// writes into every pod (ClusterFirst: the cluster DNS Service).
func System(netip.Addr) (Server, error) {
	f, err := os.Open(resolvConf)
	if err != nil {
		return Server{}, err
	}
	defer f.Close()
	return FromResolvConf(f, resolvConf)
}
