package peers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// cluster returns n nodes of which windows run Windows, named the way AKS
// names them, plus two nodes whose OS is not linux or windows.
func cluster(n, windows int) []Node {
	nodes := make([]Node, 0, n+2)
	for i := range n {
		zone := fmt.Sprintf("eastus-%d", i%3+1)
		if i < windows {
			nodes = append(nodes, Node{Name: fmt.Sprintf("akswin%06d", i), OS: "windows", Zone: zone})
		} else {
			nodes = append(nodes, Node{Name: fmt.Sprintf("aks-nodepool1-31415926-vmss%06x", i), OS: "linux", Zone: zone})
		}
	}
	return append(nodes,
		Node{Name: "virtual-node-aci-linux", OS: ""},
		Node{Name: "bsd-builder-0", OS: "freebsd"})
}

func shuffled(nodes []Node, seed uint64) []Node {
	s := slices.Clone(nodes)
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// edgeSet flattens a graph to agent->peer->reason.
type edge struct{ from, to string }

func edges(g *Graph) map[edge]Reason {
	es := make(map[edge]Reason)
	for a, ps := range g.Peers {
		for _, p := range ps {
			es[edge{a, p.Name}] = p.Reason
		}
	}
	return es
}

// churn counts edges added or removed between two graphs (a change of reason
// on a kept edge does not count: the pair is probed either way).
func churn(a, b map[edge]Reason) int {
	n := 0
	for e := range a {
		if _, ok := b[e]; !ok {
			n++
		}
	}
	for e := range b {
		if _, ok := a[e]; !ok {
			n++
		}
	}
	return n
}

// degree is in-degree plus out-degree of node.
func degree(es map[edge]Reason, node string) int {
	n := 0
	for e := range es {
		if e.from == node || e.to == node {
			n++
		}
	}
	return n
}

// classStats summarises one OS class of a graph.
type classStats struct {
	nodes                   int
	maxOut, maxIn, minCross int
	meanOut, meanIn         float64
	coverageOnly            int // Coverage edges out of this class
}

func (s classStats) String() string {
	return fmt.Sprintf("n=%d out max=%d mean=%.2f in max=%d mean=%.2f min-cross-in=%d coverage-edges=%d",
		s.nodes, s.maxOut, s.meanOut, s.maxIn, s.meanIn, s.minCross, s.coverageOnly)
}

// checkGraph asserts the structural guarantees of the package doc on g and
// returns per-class figures. The per-edge checks are plain ifs: a testify
// call per edge costs a stack walk, which dominates under -race.
func checkGraph(t *testing.T, g *Graph, nodes []Node, cfg Config) map[OS]classStats {
	t.Helper()
	osOf := map[string]OS{}
	for _, n := range nodes {
		if o, seen := osOf[n.Name]; seen && o != ParseOS(n.OS) {
			osOf[n.Name] = Unknown
			continue
		}
		osOf[n.Name] = ParseOS(n.OS)
	}
	size := map[OS]int{Linux: g.Linux, Windows: g.Windows}
	for name, o := range osOf {
		if _, ok := g.Peers[name]; ok && o == Unknown {
			t.Fatalf("unknown-OS node %s has an agent", name)
		}
	}
	require.Len(t, g.Peers, g.Linux+g.Windows)

	in := map[string]int{}
	sameIn := map[string]int{}
	crossIn := map[string]int{}
	stats := map[OS]classStats{}
	for a, ps := range g.Peers {
		ao := osOf[a]
		st := stats[ao]
		var same, cross, cov int
		for i, p := range ps {
			switch {
			case p.Name == a:
				t.Fatalf("self edge on %s", a)
			case p.OS == Unknown || p.OS != osOf[p.Name]:
				t.Fatalf("%s probes %s classed %v, want %v", a, p.Name, p.OS, osOf[p.Name])
			case i > 0 && ps[i-1].Name >= p.Name:
				t.Fatalf("peers of %s not sorted or duplicated at %s", a, p.Name)
			}
			switch {
			case p.Reason == Same && p.OS == ao:
				same++
				sameIn[p.Name]++
			case (p.Reason == Cross || p.Reason == Coverage) && p.OS == ao.other():
				crossIn[p.Name]++
				if p.Reason == Cross {
					cross++
				} else {
					cov++
				}
			default:
				t.Fatalf("%s -> %s: reason %v for %v -> %v", a, p.Name, p.Reason, ao, p.OS)
			}
			in[p.Name]++
		}
		if same != min(cfg.SameOS, size[ao]-1) || cross != min(cfg.CrossOS, size[ao.other()]) || len(ps) > cfg.MaxPeers {
			t.Fatalf("%s: %d same, %d cross, %d peers", a, same, cross, len(ps))
		}
		st.maxOut = max(st.maxOut, len(ps))
		st.meanOut += float64(len(ps))
		st.coverageOnly += cov
		stats[ao] = st
	}

	// Same-OS in-degree is exact; cross-OS in-degree meets the coverage
	// guarantee except for the nodes Uncovered names.
	uncovered := map[string]Gap{}
	for _, gap := range g.Uncovered {
		uncovered[gap.Name] = gap
	}
	for a := range g.Peers {
		o := osOf[a]
		st := stats[o]
		st.nodes++
		st.maxIn = max(st.maxIn, in[a])
		st.meanIn += float64(in[a])
		if st.nodes == 1 || crossIn[a] < st.minCross {
			st.minCross = crossIn[a]
		}
		stats[o] = st
		if sameIn[a] != min(cfg.SameOS, size[o]-1) {
			t.Fatalf("same-OS in-degree of %s is %d", a, sameIn[a])
		}
		want := min(cfg.MinCrossProbers, size[o.other()])
		gap, listed := uncovered[a]
		switch {
		case listed && gap != (Gap{Name: a, OS: o, Probers: crossIn[a], Want: want}):
			t.Fatalf("gap %+v, counted %d probers of %d", gap, crossIn[a], want)
		case listed != (crossIn[a] < want):
			t.Fatalf("%s (%v) has %d cross-OS probers, want %d; listed uncovered: %v", a, o, crossIn[a], want, listed)
		}
	}
	for o, st := range stats {
		st.meanOut /= float64(st.nodes)
		st.meanIn /= float64(st.nodes)
		stats[o] = st
	}
	if len(g.Shortfall) == 0 {
		require.Empty(t, g.Uncovered, "uncovered nodes without any dropped duty")
	}
	return stats
}
