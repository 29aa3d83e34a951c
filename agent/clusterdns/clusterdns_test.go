package clusterdns

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s))
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// Adapters as a Windows container and a Windows host show them.
var (
	loopback = Adapter{Name: "Loopback Pseudo-Interface 1", Index: 1, Up: true, Unicast: addrs("127.0.0.1", "::1"),
		DNSServers: addrs("fec0:0:0:ffff::1", "fec0:0:0:ffff::2", "fec0:0:0:ffff::3"), Metric: 75}
	podAdapter = Adapter{Name: "vEthernet (Ethernet)", Index: 14, Up: true, Unicast: addrs("fe80::1c2d:3e4f:5a6b:7c8d", "10.244.3.5"),
		Gateways: addrs("10.244.3.1"), DNSServers: addrs("10.96.0.10"), Metric: 5}
	hostAdapter = Adapter{Name: "Ethernet 2", Index: 6, Up: true, Unicast: addrs("192.168.1.20"),
		Gateways: addrs("192.168.1.1"), DNSServers: addrs("192.168.1.1", "8.8.8.8"), Metric: 25}
	dualStack = Adapter{Name: "vEthernet (dual)", Index: 9, Up: true, Unicast: addrs("10.244.3.6", "fd00:10:244:3::6"),
		Gateways: addrs("10.244.3.1", "fd00:10:244:3::1"), DNSServers: addrs("fd00:10:96::a", "10.96.0.10"), Metric: 5}
)

func TestFromAdapters(t *testing.T) {
	down := podAdapter
	down.Up = false
	noGateway := podAdapter
	noGateway.Gateways = nil
	noDNS := podAdapter
	noDNS.DNSServers = nil
	lowerMetric := hostAdapter
	lowerMetric.Name, lowerMetric.Index, lowerMetric.Metric = "Ethernet 3", 7, 3
	lowerMetric.DNSServers = addrs("192.168.2.1")
	sameMetric := hostAdapter
	sameMetric.Name, sameMetric.Index = "Ethernet 1", 3
	sameMetric.DNSServers = addrs("192.168.3.1")
	unspecified := podAdapter
	unspecified.DNSServers = addrs("0.0.0.0", "10.96.0.10")

	tests := []struct {
		name     string
		adapters []Adapter
		podIP    string
		want     string
		detail   string // substring of Detail
		err      string // substring of the error; want ErrNotFound
	}{
		{name: "the pod's adapter, found by its IP", adapters: []Adapter{loopback, hostAdapter, podAdapter}, podIP: "10.244.3.5",
			want: "10.96.0.10:53", detail: `"vEthernet (Ethernet)" (index 14), which carries the pod IP 10.244.3.5`},
		{name: "the pod IP wins over a lower metric", adapters: []Adapter{lowerMetric, podAdapter}, podIP: "10.244.3.5",
			want: "10.96.0.10:53", detail: "carries the pod IP"},
		{name: "no pod IP: the default route of the lowest metric", adapters: []Adapter{loopback, hostAdapter, podAdapter}, podIP: "",
			want: "10.96.0.10:53", detail: "carries a default gateway (metric 5)"},
		{name: "pod IP on no adapter: says so and takes the default route", adapters: []Adapter{hostAdapter, lowerMetric}, podIP: "10.244.3.5",
			want: "192.168.2.1:53", detail: "no adapter carries the pod IP 10.244.3.5; this one carries a default gateway (metric 3)"},
		{name: "equal metrics: the lower index", adapters: []Adapter{hostAdapter, sameMetric}, want: "192.168.3.1:53", detail: "index 3"},
		{name: "the first server of the pod IP's family: IPv4", adapters: []Adapter{dualStack}, podIP: "10.244.3.6", want: "10.96.0.10:53"},
		{name: "the first server of the pod IP's family: IPv6", adapters: []Adapter{dualStack}, podIP: "fd00:10:244:3::6", want: "[fd00:10:96::a]:53"},
		{name: "no pod IP: the first server in Windows' order", adapters: []Adapter{dualStack}, want: "[fd00:10:96::a]:53"},
		{name: "an IPv4-mapped pod IP matches its IPv4 address", adapters: []Adapter{hostAdapter, podAdapter}, podIP: "::ffff:10.244.3.5",
			want: "10.96.0.10:53", detail: "carries the pod IP 10.244.3.5"},
		{name: "no server of the pod IP's family: the first server", adapters: []Adapter{podAdapter}, podIP: "fe80::1c2d:3e4f:5a6b:7c8d",
			want: "10.96.0.10:53"},
		{name: "unspecified servers are skipped", adapters: []Adapter{unspecified}, podIP: "10.244.3.5", want: "10.96.0.10:53"},
		{name: "a down adapter is passed over", adapters: []Adapter{down, hostAdapter}, podIP: "10.244.3.5", want: "192.168.1.1:53"},
		{name: "only Windows' fec0 defaults: none found", adapters: []Adapter{loopback}, podIP: "10.244.3.5",
			err: "Loopback Pseudo-Interface 1: no DNS servers"},
		{name: "every adapter down or without servers: each named", adapters: []Adapter{down, noDNS}, podIP: "10.244.3.5",
			err: "vEthernet (Ethernet): down; vEthernet (Ethernet): no DNS servers"},
		{name: "no adapters at all", err: "no adapters"},
		{name: "servers but neither pod IP nor gateway", adapters: []Adapter{noGateway}, podIP: "10.244.9.9",
			err: "adapters with DNS servers (vEthernet (Ethernet)) carry neither the pod IP 10.244.9.9 nor a default gateway"},
		{name: "servers, no gateway, the pod IP unknown", adapters: []Adapter{noGateway},
			err: "carry neither the pod IP (unknown) nor a default gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var podIP netip.Addr
			if tt.podIP != "" {
				podIP = netip.MustParseAddr(tt.podIP)
			}
			got, err := FromAdapters(tt.adapters, podIP)
			if tt.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrNotFound)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Addr)
			assert.Equal(t, SourceAdapter, got.Source)
			assert.Contains(t, got.Detail, tt.detail)
		})
	}
}

func TestFromAdaptersKeepsTheLinkLocalZone(t *testing.T) {
	a := podAdapter
	a.DNSServers = []netip.Addr{netip.MustParseAddr("fe80::1").WithZone("14")}
	got, err := FromAdapters([]Adapter{a}, netip.Addr{})
	require.NoError(t, err)
	assert.Equal(t, "[fe80::1%14]:53", got.Addr)
}

func TestFromResolvConf(t *testing.T) {
	tests := []struct {
		name, conf, want, err string
	}{
		{name: "a pod's ClusterFirst file", conf: "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n", want: "10.96.0.10:53"},
		{name: "the first of several", conf: "nameserver 10.96.0.10\nnameserver 10.96.0.11\n", want: "10.96.0.10:53"},
		{name: "IPv6", conf: "nameserver fd00:10:96::a\n", want: "[fd00:10:96::a]:53"},
		{name: "comments and blanks", conf: "# generated\n\n  nameserver   10.96.0.10  \n", want: "10.96.0.10:53"},
		{name: "no nameserver line", conf: "search cluster.local\n", err: "test-resolv.conf has no nameserver line"},
		{name: "empty file", conf: "", err: "has no nameserver line"},
		{name: "a nameserver without address", conf: "nameserver\n", err: "test-resolv.conf line 1: nameserver without an address"},
		{name: "a nameserver that is no IP", conf: "search x\nnameserver dns.example\n", err: `test-resolv.conf line 2: nameserver "dns.example"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromResolvConf(strings.NewReader(tt.conf), "test-resolv.conf")
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Server{Addr: tt.want, Source: SourceResolvConf, Detail: "first nameserver of test-resolv.conf"}, got)
		})
	}
}

func TestFromService(t *testing.T) {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	svc := func(ip string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
	}
	tests := []struct {
		name string
		obj  *corev1.Service
		want string
		err  string
	}{
		{name: "kube-dns as kubeadm makes it", obj: svc("10.96.0.10",
			corev1.ServicePort{Name: "dns", Protocol: udp, Port: 53}, corev1.ServicePort{Name: "dns-tcp", Protocol: tcp, Port: 53},
			corev1.ServicePort{Name: "metrics", Protocol: tcp, Port: 9153}), want: "10.96.0.10:53"},
		{name: "the UDP port named dns, wherever it is", obj: svc("10.96.0.10",
			corev1.ServicePort{Name: "dns-tcp", Protocol: tcp, Port: 53}, corev1.ServicePort{Name: "dns", Protocol: udp, Port: 5353}), want: "10.96.0.10:5353"},
		{name: "unnamed UDP 53", obj: svc("10.96.0.10", corev1.ServicePort{Protocol: udp, Port: 53}), want: "10.96.0.10:53"},
		{name: "protocol left to its default", obj: svc("10.96.0.10", corev1.ServicePort{Name: "dns", Port: 53}), want: "10.96.0.10:53"},
		{name: "only TCP 53", obj: svc("10.96.0.10", corev1.ServicePort{Name: "dns-tcp", Protocol: tcp, Port: 53}), want: "10.96.0.10:53"},
		{name: "IPv6 ClusterIP", obj: svc("fd00:10:96::a", corev1.ServicePort{Name: "dns", Protocol: udp, Port: 53}), want: "[fd00:10:96::a]:53"},
		{name: "headless", obj: svc("None", corev1.ServicePort{Name: "dns", Protocol: udp, Port: 53}), err: `Service kube-system/kube-dns has no ClusterIP ("None")`},
		{name: "no DNS port", obj: svc("10.96.0.10", corev1.ServicePort{Name: "metrics", Protocol: tcp, Port: 9153}),
			err: "Service kube-system/kube-dns has no UDP port named dns and no port 53"},
		{name: "missing", err: `service kube-system/kube-dns: services "kube-dns" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tt.obj != nil {
				client = fake.NewClientset(tt.obj)
			}
			got, err := FromService(context.Background(), client, "kube-system", "kube-dns")
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Server{Addr: tt.want, Source: SourceService, Detail: "ClusterIP of Service kube-system/kube-dns"}, got)
		})
	}
}

func TestFinderOrder(t *testing.T) {
	system := Server{Addr: "10.96.0.10:53", Source: systemSource, Detail: "system"}
	service := Server{Addr: "10.96.0.11:53", Source: SourceService, Detail: "service"}
	sysOK := func(netip.Addr) (Server, error) { return system, nil }
	sysNone := func(netip.Addr) (Server, error) { return Server{}, errors.New("no adapter has one") }
	svcOK := func(context.Context) (Server, error) { return service, nil }
	svcErr := func(context.Context) (Server, error) { return Server{}, errors.New("forbidden") }
	tests := []struct {
		name     string
		f        Finder
		explicit string
		want     Server
		err      []string
	}{
		{name: "the flag wins", f: Finder{System: sysOK, Service: svcOK}, explicit: "10.0.0.53:5353",
			want: Server{Addr: "10.0.0.53:5353", Source: SourceFlag, Detail: "--dns-server"}},
		{name: "a bad flag is an error, not a fallback", f: Finder{System: sysOK}, explicit: "10.0.0.53",
			err: []string{`--dns-server "10.0.0.53"`, "missing port"}},
		{name: "the OS's configuration before the API", f: Finder{System: sysOK, Service: svcOK}, want: system},
		{name: "the DNS Service when the OS names none", f: Finder{System: sysNone, Service: svcOK}, want: service},
		{name: "no client: both reasons", f: Finder{System: sysNone},
			err: []string{string(systemSource) + ": no adapter has one", "kube-dns-service: no Kubernetes client"}},
		{name: "both fail: both reasons", f: Finder{System: sysNone, Service: svcErr},
			err: []string{string(systemSource) + ": no adapter has one", "kube-dns-service: forbidden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.Find(context.Background(), tt.explicit, netip.MustParseAddr("10.244.3.5"))
			if len(tt.err) > 0 {
				require.Error(t, err)
				for _, e := range tt.err {
					assert.Contains(t, err.Error(), e)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
