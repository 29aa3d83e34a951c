// Package clusterdns finds the cluster DNS server that the dns check's direct
// query (phase resolve_direct) asks, from the same place the pod's own
// resolver takes it: the network adapter's DNS servers on Windows
// (GetAdaptersAddresses; a Windows container has no resolv.conf),
// /etc/resolv.conf elsewhere, and, as a second source when an API client is
// at hand, the kube-dns Service's ClusterIP. An explicit server always wins.
package clusterdns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Source says where a DNS server was found.
type Source string

const (
	SourceFlag       Source = "flag"             // given on the command line
	SourceAdapter    Source = "adapter"          // the adapter's DNS servers (Windows)
	SourceResolvConf Source = "resolv.conf"      // the first nameserver of /etc/resolv.conf
	SourceService    Source = "kube-dns-service" // the DNS Service's ClusterIP, from the API
)

// Server is a DNS server and where it came from.
type Server struct {
	Addr   string // HOST:PORT
	Source Source
	Detail string // what in the source named it, e.g. the adapter
}

// ErrNotFound is wrapped by every "this source names no server" error.
var ErrNotFound = errors.New("no DNS server found")

// Adapter is what the choice reads of one IP_ADAPTER_ADDRESSES entry.
type Adapter struct {
	Name       string // FriendlyName, e.g. "vEthernet (Ethernet)"
	Index      uint32
	Up         bool // OperStatus is IfOperStatusUp
	Unicast    []netip.Addr
	Gateways   []netip.Addr
	DNSServers []netip.Addr // in the order Windows' resolver tries them
	Metric     uint32       // Ipv4Metric: lower is preferred for the default route
}

// FromAdapters picks the DNS server Windows' resolver would ask first for
// the pod's traffic: the adapter carrying podIP (when podIP is valid and an
// adapter has it), otherwise the up adapter with a default gateway of the
// lowest metric; in that adapter, the first server of podIP's family, or the
// first server. Adapters that are down or name no usable server are passed
// over; fec0::/10 servers are the site-local defaults Windows fills in when
// none is configured and are never the cluster's.
func FromAdapters(adapters []Adapter, podIP netip.Addr) (Server, error) {
	podIP = podIP.Unmap().WithZone("")
	type candidate struct {
		a       Adapter
		servers []netip.Addr
	}
	var cands []candidate
	var passed []string
	for _, a := range adapters {
		servers := usableServers(a.DNSServers)
		switch {
		case !a.Up:
			passed = append(passed, a.Name+": down")
		case len(servers) == 0:
			passed = append(passed, a.Name+": no DNS servers")
		default:
			cands = append(cands, candidate{a, servers})
		}
	}
	if len(cands) == 0 {
		return Server{}, fmt.Errorf("%w on any adapter (%s)", ErrNotFound, listOrNone(passed))
	}
	pick, why := -1, ""
	if podIP.IsValid() {
		for i, c := range cands {
			if slices.ContainsFunc(c.a.Unicast, func(u netip.Addr) bool { return u.Unmap().WithZone("") == podIP }) {
				pick, why = i, "carries the pod IP "+podIP.String()
				break
			}
		}
	}
	if pick < 0 {
		for i, c := range cands {
			if len(c.a.Gateways) == 0 {
				continue
			}
			if pick < 0 || c.a.Metric < cands[pick].a.Metric ||
				(c.a.Metric == cands[pick].a.Metric && c.a.Index < cands[pick].a.Index) {
				pick = i
			}
		}
		if pick >= 0 {
			why = "carries a default gateway (metric " + strconv.FormatUint(uint64(cands[pick].a.Metric), 10) + ")"
			if podIP.IsValid() {
				why = "no adapter carries the pod IP " + podIP.String() + "; this one " + why
			}
		}
	}
	if pick < 0 {
		var names []string
		for _, c := range cands {
			names = append(names, c.a.Name)
		}
		return Server{}, fmt.Errorf("%w: adapters with DNS servers (%s) carry neither the pod IP %s nor a default gateway",
			ErrNotFound, strings.Join(names, ", "), addrOrUnknown(podIP))
	}
	c := cands[pick]
	server := c.servers[0]
	if podIP.IsValid() {
		if i := slices.IndexFunc(c.servers, func(s netip.Addr) bool { return s.Is4() == podIP.Is4() }); i >= 0 {
			server = c.servers[i]
		}
	}
	return Server{
		Addr:   net.JoinHostPort(server.String(), "53"),
		Source: SourceAdapter,
		Detail: fmt.Sprintf("adapter %q (index %d), which %s", c.a.Name, c.a.Index, why),
	}, nil
}

func usableServers(in []netip.Addr) []netip.Addr {
	siteLocal := netip.MustParsePrefix("fec0::/10")
	var out []netip.Addr
	for _, s := range in {
		s = s.Unmap()
		if s.IsValid() && !s.IsUnspecified() && !siteLocal.Contains(s.WithZone("")) {
			out = append(out, s)
		}
	}
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "no adapters"
	}
	return strings.Join(s, "; ")
}

func addrOrUnknown(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "(unknown)"
}

// FromResolvConf returns the first nameserver of a resolv.conf, port 53.
func FromResolvConf(r io.Reader, path string) (Server, error) {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "nameserver" {
			continue
		}
		if len(f) < 2 {
			return Server{}, fmt.Errorf("%s line %d: nameserver without an address", path, line)
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			return Server{}, fmt.Errorf("%s line %d: nameserver %q: %w", path, line, f[1], err)
		}
		return Server{Addr: net.JoinHostPort(ip.String(), "53"), Source: SourceResolvConf,
			Detail: fmt.Sprintf("first nameserver of %s", path)}, nil
	}
	if err := sc.Err(); err != nil {
		return Server{}, fmt.Errorf("%s: %w", path, err)
	}
	return Server{}, fmt.Errorf("%w: %s has no nameserver line", ErrNotFound, path)
}

// FromService reads the DNS Service namespace/name (kube-system/kube-dns in
// most clusters) and returns its ClusterIP with its DNS port: the UDP port
// named "dns", else the UDP port 53, else any port 53.
func FromService(ctx context.Context, client kubernetes.Interface, namespace, name string) (Server, error) {
	ref := namespace + "/" + name
	svc, err := client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Server{}, fmt.Errorf("service %s: %w", ref, err)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return Server{}, fmt.Errorf("%w: Service %s has no ClusterIP (%q)", ErrNotFound, ref, ip)
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return Server{}, fmt.Errorf("service %s: ClusterIP %q: %w", ref, ip, err)
	}
	port := int32(-1)
	for _, match := range []func(corev1.ServicePort) bool{
		func(p corev1.ServicePort) bool { return udp(p) && p.Name == "dns" },
		func(p corev1.ServicePort) bool { return udp(p) && p.Port == 53 },
		func(p corev1.ServicePort) bool { return p.Port == 53 },
	} {
		if i := slices.IndexFunc(svc.Spec.Ports, match); i >= 0 {
			port = svc.Spec.Ports[i].Port
			break
		}
	}
	if port < 0 {
		return Server{}, fmt.Errorf("%w: Service %s has no UDP port named dns and no port 53", ErrNotFound, ref)
	}
	return Server{Addr: net.JoinHostPort(ip, strconv.Itoa(int(port))), Source: SourceService,
		Detail: "ClusterIP of Service " + ref}, nil
}

func udp(p corev1.ServicePort) bool { return p.Protocol == "" || p.Protocol == corev1.ProtocolUDP }

// Finder tries the sources in order: the explicit server, the OS's own
// configuration, then the DNS Service.
type Finder struct {
	// System reads the OS's configuration; nil means System (this OS).
	System func(podIP netip.Addr) (Server, error)
	// Service reads the DNS Service from the API; nil when there is no client.
	Service func(ctx context.Context) (Server, error)
}

// Find returns the server to ask. explicit, when set, must be HOST:PORT and
// wins. The error lists why every source failed; the caller decides whether
// running without a direct query is acceptable.
func (f Finder) Find(ctx context.Context, explicit string, podIP netip.Addr) (Server, error) {
	if explicit != "" {
		if _, _, err := net.SplitHostPort(explicit); err != nil {
			return Server{}, fmt.Errorf("--dns-server %q: %w", explicit, err)
		}
		return Server{Addr: explicit, Source: SourceFlag, Detail: "--dns-server"}, nil
	}
	system := f.System
	if system == nil {
		system = System
	}
	s, sysErr := system(podIP)
	if sysErr == nil {
		return s, nil
	}
	errs := []error{fmt.Errorf("%s: %w", systemSource, sysErr)}
	if f.Service == nil {
		errs = append(errs, fmt.Errorf("%s: no Kubernetes client (static mode)", SourceService))
	} else {
		s, err := f.Service(ctx)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", SourceService, err))
	}
	return Server{}, errors.Join(errs...)
}
