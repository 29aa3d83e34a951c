package clusterdns

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// systemSource names what System reads on this OS.
const systemSource = SourceAdapter

// System returns the DNS server of the pod's adapter, as Windows' resolver
// (and Go's own on Windows) finds it: a Windows container has no resolv.conf,
// the kubelet's cluster DNS is set on the container's adapter.
func System(podIP netip.Addr) (Server, error) {
	adapters, err := Adapters()
	if err != nil {
		return Server{}, err
	}
	return FromAdapters(adapters, podIP)
}

// Adapters reads every adapter with GetAdaptersAddresses.
func Adapters() ([]Adapter, error) {
	const flags = windows.GAA_FLAG_INCLUDE_GATEWAYS | windows.GAA_FLAG_SKIP_ANYCAST | windows.GAA_FLAG_SKIP_MULTICAST
	size := uint32(15000) // the documented starting size
	var buf []byte
	for {
		buf = make([]byte, size)
		err := windows.GetAdaptersAddresses(windows.AF_UNSPEC, flags, 0, (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])), &size)
		if err == nil {
			break
		}
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) || size <= uint32(len(buf)) {
			return nil, fmt.Errorf("GetAdaptersAddresses: %w", err)
		}
	}
	if size == 0 {
		return nil, nil
	}
	var out []Adapter
	for aa := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])); aa != nil; aa = aa.Next {
		a := Adapter{
			Name:   windows.UTF16PtrToString(aa.FriendlyName),
			Index:  aa.IfIndex,
			Up:     aa.OperStatus == windows.IfOperStatusUp,
			Metric: aa.Ipv4Metric,
		}
		if a.Index == 0 { // an IPv6-only adapter
			a.Index = aa.Ipv6IfIndex
		}
		if a.Name == "" {
			a.Name = "#" + strconv.FormatUint(uint64(a.Index), 10)
		}
		for u := aa.FirstUnicastAddress; u != nil; u = u.Next {
			a.Unicast = appendAddr(a.Unicast, &u.Address)
		}
		for g := aa.FirstGatewayAddress; g != nil; g = g.Next {
			a.Gateways = appendAddr(a.Gateways, &g.Address)
		}
		for d := aa.FirstDnsServerAddress; d != nil; d = d.Next {
			a.DNSServers = appendAddr(a.DNSServers, &d.Address)
		}
		out = append(out, a)
	}
	return out, nil
}

func appendAddr(to []netip.Addr, sa *windows.SocketAddress) []netip.Addr {
	if sa.Sockaddr == nil {
		return to
	}
	s, err := sa.Sockaddr.Sockaddr()
	if err != nil {
		return to
	}
	switch s := s.(type) {
	case *syscall.SockaddrInet4:
		return append(to, netip.AddrFrom4(s.Addr))
	case *syscall.SockaddrInet6:
		a := netip.AddrFrom16(s.Addr)
		if s.ZoneId != 0 && a.IsLinkLocalUnicast() {
			a = a.WithZone(strconv.FormatUint(uint64(s.ZoneId), 10))
		}
		return append(to, a)
	}
	return to
}
