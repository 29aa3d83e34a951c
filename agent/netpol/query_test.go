package netpol

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestParsePort(t *testing.T) {
	cases := []struct {
		in    string
		port  Port
		proto corev1.Protocol
		err   string
	}{
		{in: "80", port: Port{Number: 80}, proto: corev1.ProtocolTCP},
		{in: "80/TCP", port: Port{Number: 80}, proto: corev1.ProtocolTCP},
		{in: "53/udp", port: Port{Number: 53}, proto: corev1.ProtocolUDP},
		{in: "9000/Sctp", port: Port{Number: 9000}, proto: corev1.ProtocolSCTP},
		{in: "http", port: Port{Name: "http"}, proto: corev1.ProtocolTCP},
		{in: "http/tcp", port: Port{Name: "http"}, proto: corev1.ProtocolTCP},
		{in: "HTTP/TCP", port: Port{Name: "http"}, proto: corev1.ProtocolTCP},
		{in: "dns-udp/UDP", port: Port{Name: "dns-udp"}, proto: corev1.ProtocolUDP},
		{in: "65535", port: Port{Number: 65535}, proto: corev1.ProtocolTCP},
		{in: "0", err: "1-65535"},
		{in: "65536", err: "1-65535"},
		{in: "80x", err: "1-65535"},
		{in: "80/icmp", err: `unknown protocol "icmp"`},
		{in: "/tcp", err: "missing port"},
		{in: "", err: "missing port"},
		{in: "-http", err: "invalid port name"},
		{in: "a-very-long-port-name", err: "invalid port name"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			p, proto, err := ParsePort(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.port, p)
			assert.Equal(t, tc.proto, proto)
		})
	}
}

func TestParsePodRef(t *testing.T) {
	cases := []struct {
		in   string
		want PodRef
		err  string
	}{
		{in: "shop/web-0", want: PodRef{"shop", "web-0"}},
		{in: "web-0", want: PodRef{"default", "web-0"}},
		{in: "kube-system/coredns-5d78c9869d-abcde", want: PodRef{"kube-system", "coredns-5d78c9869d-abcde"}},
		{in: "a/b/c", err: "want NS/POD"},
		{in: "Shop/web", err: `namespace "Shop"`},
		{in: "/web", err: `namespace ""`},
		{in: "shop/", err: `name ""`},
		{in: "shop/web_0", err: `name "web_0"`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParsePodRef(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, r)
		})
	}
}

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery(QueryArgs{From: "a/x", To: "b/y", Port: "53/udp"})
	require.NoError(t, err)
	assert.Equal(t, Query{From: PodRef{"a", "x"}, To: PodRef{"b", "y"}, Port: Port{Number: 53}, Protocol: corev1.ProtocolUDP}, q)

	q, err = ParseQuery(QueryArgs{FromIP: "::ffff:192.0.2.1", To: "b/y", Port: "http"})
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("192.0.2.1"), q.FromIP, "IPv4-mapped addresses are IPv4")
	assert.True(t, q.From.IsZero())

	for _, tc := range []struct {
		name string
		args QueryArgs
		err  string
	}{
		{"no source", QueryArgs{To: "b/y", Port: "80"}, "a source is required"},
		{"two sources", QueryArgs{From: "a/x", FromIP: "192.0.2.1", To: "b/y", Port: "80"}, "not both"},
		{"bad IP", QueryArgs{FromIP: "192.0.2", To: "b/y", Port: "80"}, `source IP: "192.0.2" is not an IP address`},
		{"zoned IP", QueryArgs{FromIP: "fe80::1%eth0", To: "b/y", Port: "80"}, "zoned"},
		{"bad source pod", QueryArgs{From: "a/x/y", To: "b/y", Port: "80"}, "source: "},
		{"no destination", QueryArgs{From: "a/x", Port: "80"}, "destination pod"},
		{"bad destination", QueryArgs{From: "a/x", To: "B/y", Port: "80"}, "destination: "},
		{"no port", QueryArgs{From: "a/x", To: "b/y"}, "a port"},
		{"bad port", QueryArgs{From: "a/x", To: "b/y", Port: "80/gre"}, "unknown protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseQuery(tc.args)
			assert.ErrorContains(t, err, tc.err)
		})
	}
}
