package netpol

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// QueryArgs are the textual query arguments as a command line carries them.
type QueryArgs struct {
	From   string // NS/POD
	FromIP string // IP outside the cluster
	To     string // NS/POD
	Port   string // PORT[/PROTO]
}

// ParseQuery turns textual arguments into a Query. Exactly one of From and FromIP
// must be set.
func ParseQuery(a QueryArgs) (Query, error) {
	var q Query
	var err error
	switch {
	case a.From != "" && a.FromIP != "":
		return Query{}, errors.New("give either a source pod or a source IP, not both")
	case a.From != "":
		if q.From, err = ParsePodRef(a.From); err != nil {
			return Query{}, fmt.Errorf("source: %w", err)
		}
	case a.FromIP != "":
		if q.FromIP, err = ParseSourceIP(a.FromIP); err != nil {
			return Query{}, fmt.Errorf("source IP: %w", err)
		}
	default:
		return Query{}, errors.New("a source is required: a pod (NS/POD) or an IP")
	}
	if a.To == "" {
		return Query{}, errors.New("a destination pod (NS/POD) is required")
	}
	if q.To, err = ParsePodRef(a.To); err != nil {
		return Query{}, fmt.Errorf("destination: %w", err)
	}
	if a.Port == "" {
		return Query{}, errors.New("a port (PORT[/PROTO]) is required")
	}
	if q.Port, q.Protocol, err = ParsePort(a.Port); err != nil {
		return Query{}, err
	}
	return q, nil
}

// ParsePodRef parses "NS/POD". A bare "POD" means namespace "default", as with
// kubectl. "NS/KIND/NAME" names the pod synthesized from a workload manifest
// (KIND is deployment, daemonset, statefulset, replicaset, job or cronjob; see
// Load).
func ParsePodRef(s string) (PodRef, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = defaultNamespace, s
	}
	if kind, wname, ok := strings.Cut(name, "/"); ok {
		if !isWorkloadKind(strings.ToLower(kind)) || strings.Contains(wname, "/") {
			return PodRef{}, fmt.Errorf("pod %q: want NS/POD or NS/KIND/NAME with KIND one of deployment, daemonset, statefulset, replicaset, job, cronjob", s)
		}
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return PodRef{}, fmt.Errorf("pod %q: namespace %q: %s", s, ns, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsDNS1123Subdomain(wname); len(msgs) > 0 {
			return PodRef{}, fmt.Errorf("pod %q: name %q: %s", s, wname, strings.Join(msgs, "; "))
		}
		return PodRef{Namespace: ns, Name: strings.ToLower(kind) + "/" + wname}, nil
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return PodRef{}, fmt.Errorf("pod %q: namespace %q: %s", s, ns, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return PodRef{}, fmt.Errorf("pod %q: name %q: %s", s, name, strings.Join(msgs, "; "))
	}
	return PodRef{Namespace: ns, Name: name}, nil
}

// ParseSourceIP parses an IPv4 or IPv6 address (IPv4-mapped IPv6 is taken as IPv4).
func ParseSourceIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zoned addresses are not pod-network addresses", s)
	}
	return a.Unmap(), nil
}

// ParsePort parses "PORT[/PROTO]": PORT is a number (1-65535) or a container port
// name of the destination pod, PROTO is TCP (the default), UDP or SCTP. Both are
// case-insensitive; port names are lowercase in the API, so names are lowered.
func ParsePort(s string) (Port, corev1.Protocol, error) {
	ps, protoStr, hasProto := strings.Cut(s, "/")
	proto := corev1.ProtocolTCP
	if hasProto {
		proto = corev1.Protocol(strings.ToUpper(protoStr))
		if !validProtocol(proto) {
			return Port{}, "", fmt.Errorf("port %q: unknown protocol %q: want TCP, UDP or SCTP", s, protoStr)
		}
	}
	if ps == "" {
		return Port{}, "", fmt.Errorf("port %q: missing port", s)
	}
	if ps[0] >= '0' && ps[0] <= '9' {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return Port{}, "", fmt.Errorf("port %q: want a number in 1-65535 or a port name", s)
		}
		return Port{Number: int32(n)}, proto, nil
	}
	name := strings.ToLower(ps)
	if msgs := validation.IsValidPortName(name); len(msgs) > 0 {
		return Port{}, "", fmt.Errorf("port %q: invalid port name: %s", s, strings.Join(msgs, "; "))
	}
	return Port{Name: name}, proto, nil
}
