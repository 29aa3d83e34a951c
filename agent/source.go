package agent

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/xosprobe/xosprobe/agent/responder"
)

// Ports are the four responder ports of an agent.
type Ports struct {
	HTTP, TCP, Allow, Deny int
}

// DefaultPorts are the ports every agent listens on in a cluster.
var DefaultPorts = Ports{HTTP: responder.DefaultHTTPPort, TCP: responder.DefaultTCPPort,
	Allow: responder.DefaultAllowPort, Deny: responder.DefaultDenyPort}

// PortsFromBase lays the four ports out consecutively from base (http, tcp,
// allow, deny), so several agents can share one loopback address.
func PortsFromBase(base int) Ports {
	return Ports{HTTP: base, TCP: base + 1, Allow: base + 2, Deny: base + 3}
}

// PeerInfo is an agent that can be probed: its node, OS and pod address.
type PeerInfo struct {
	Node, OS, Zone, Pod, IP string
	Ports                   Ports
}

// ServiceInfo is a per-OS probe Service: the dns step resolves FQDN, the
// service step goes through ClusterIP:Port.
type ServiceInfo struct {
	OS, Name, FQDN, ClusterIP string
	Port                      int
}

// ExcludedPeer is an agent that exists but is not probed: it is starting,
// going away or on a node being emptied (see discovery.Excluded).
type ExcludedPeer struct {
	Node, OS, Reason string
}

// View is what the agent knows of the cluster at one moment.
type View struct {
	Peers    []PeerInfo // may include the agent itself; it is never probed
	Excluded []ExcludedPeer
	Services []ServiceInfo
	// Synced is false until the source has a complete picture; the agent is
	// not ready before.
	Synced bool
}

// Source supplies the View: the Kubernetes informers, or a static list.
type Source interface {
	View() View
	// Changes delivers a value whenever View may have changed (coalesced).
	Changes() <-chan struct{}
}

// StaticSource is a fixed View, for running without Kubernetes.
type StaticSource struct{ V View }

func (s StaticSource) View() View               { s.V.Synced = true; return s.V }
func (s StaticSource) Changes() <-chan struct{} { return nil }

// ParsePeer parses a static peer: NODE=OS@IP[:BASEPORT]. BASEPORT lays out
// the four responder ports as in PortsFromBase; without it the defaults apply.
func ParsePeer(s string) (PeerInfo, error) {
	node, rest, ok := strings.Cut(s, "=")
	osName, addr, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 || node == "" {
		return PeerInfo{}, fmt.Errorf("peer %q: want NODE=OS@IP[:BASEPORT]", s)
	}
	if osName != "linux" && osName != "windows" {
		return PeerInfo{}, fmt.Errorf("peer %q: os %q must be linux or windows", s, osName)
	}
	p := PeerInfo{Node: node, OS: osName, Pod: node, Ports: DefaultPorts}
	host := addr
	if h, port, err := net.SplitHostPort(addr); err == nil {
		base, err := strconv.Atoi(port)
		if err != nil || base < 1 || base > 65532 {
			return PeerInfo{}, fmt.Errorf("peer %q: base port %q must be 1-65532", s, port)
		}
		host, p.Ports = h, PortsFromBase(base)
	}
	if net.ParseIP(host) == nil {
		return PeerInfo{}, fmt.Errorf("peer %q: %q is not an IP address", s, host)
	}
	p.IP = host
	return p, nil
}

// ParseService parses a static probe Service: OS=HOST:PORT[,FQDN].
func ParseService(s string) (ServiceInfo, error) {
	osName, rest, ok := strings.Cut(s, "=")
	if !ok || (osName != "linux" && osName != "windows") {
		return ServiceInfo{}, fmt.Errorf("service %q: want OS=VIP:PORT[,FQDN] with OS linux or windows", s)
	}
	addr, fqdn, _ := strings.Cut(rest, ",")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ServiceInfo{}, fmt.Errorf("service %q: %w", s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return ServiceInfo{}, fmt.Errorf("service %q: port %q must be 1-65535", s, port)
	}
	return ServiceInfo{OS: osName, Name: "xosprobe-" + osName, FQDN: fqdn, ClusterIP: host, Port: n}, nil
}
