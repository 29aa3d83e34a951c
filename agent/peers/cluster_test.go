package peers

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type mix struct {
	name    string
	windows func(n int) int
}

var mixes = []mix{
	{"50-50", func(n int) int { return n / 2 }},
	{"10pct-windows", func(n int) int { return n / 10 }},
	{"10pct-linux", func(n int) int { return n - n/10 }},
	{"3-windows", func(int) int { return 3 }},
	{"3-linux", func(n int) int { return n - 3 }},
	{"1-windows", func(int) int { return 1 }},
	{"1-linux", func(n int) int { return n - 1 }},
	{"0-windows", func(int) int { return 0 }},
	{"0-linux", func(n int) int { return n }},
}

var sizes = []int{10, 1000, 5000}

// TestClusterProperties checks the guarantees on simulated clusters with
// default config, and logs the figures quoted in the package doc.
func TestClusterProperties(t *testing.T) {
	cfg := DefaultConfig()
	for _, n := range sizes {
		for _, mx := range mixes {
			win := mx.windows(n)
			t.Run(fmt.Sprintf("n=%d/%s", n, mx.name), func(t *testing.T) {
				t.Parallel()
				nodes := cluster(n, win)
				g, err := BuildGraph(nodes, cfg)
				require.NoError(t, err)
				stats := checkGraph(t, g, nodes, cfg)
				for _, o := range []OS{Linux, Windows} {
					st, ok := stats[o]
					if !ok {
						continue
					}
					t.Logf("%-7s %v", o, st)
					// In-degree balance within a class: Same is exact and Coverage
					// adds at most m, but Cross picks are binomial around their
					// mean (Poisson(3) when the OSes are even), so the slack covers
					// that tail: P(a node gets 15 or more) is 4e-7.
					assert.LessOrEqual(t, float64(st.maxIn), 2*st.meanIn+float64(2*cfg.CrossOS),
						"%s in-degree unbalanced", o)
				}

				// Coverage holds except where MaxPeers makes it impossible: one
				// Windows agent cannot take 4,999 Linux nodes within 2,048 peers.
				var short int
				for _, s := range g.Shortfall {
					short += s
				}
				if n == 5000 && (win == 1 || win == n-1) {
					want := n - 1 - cfg.MaxPeers // 3 Cross + MaxPeers-3 Coverage
					assert.Len(t, g.Uncovered, want)
					assert.Equal(t, want, short)
					t.Logf("shortfall: %d nodes uncovered, as designed", want)
				} else {
					assert.Empty(t, g.Uncovered)
					assert.Zero(t, short)
				}

				// Order independence, and Select agreeing with the whole graph.
				sh := shuffled(nodes, uint64(n))
				g2, err := BuildGraph(sh, cfg)
				require.NoError(t, err)
				require.Equal(t, g, g2, "graph depends on input order")
				agreeOnSample(t, g, sh, cfg, 25)
			})
		}
	}
}

// TestChurn adds and removes one node and counts changed edges. Without a
// binding MaxPeers every change is an edge of that node or one edge it
// displaced, so at most 2·deg; with it, at most 3·(deg + duties it dropped).
func TestChurn(t *testing.T) {
	cfg := DefaultConfig()
	for _, n := range sizes {
		for _, mx := range mixes {
			switch mx.name {
			case "10pct-linux", "3-linux", "1-linux", "0-linux":
				continue // mirror images of the Windows-minority mixes
			}
			win := mx.windows(n)
			t.Run(fmt.Sprintf("n=%d/%s", n, mx.name), func(t *testing.T) {
				t.Parallel()
				nodes := cluster(n, win)
				g, err := BuildGraph(nodes, cfg)
				require.NoError(t, err)
				base := edges(g)

				type op struct {
					name  string
					nodes []Node
					z     string
				}
				ops := []op{
					{"add linux", append(nodes[:len(nodes):len(nodes)], Node{Name: "aks-nodepool2-27182818-vmss000000", OS: "linux"}), ""},
					{"add windows", append(nodes[:len(nodes):len(nodes)], Node{Name: "akswin2000000", OS: "windows"}), ""},
				}
				ops[0].z, ops[1].z = ops[0].nodes[len(nodes)].Name, ops[1].nodes[len(nodes)].Name
				for _, os := range []string{"linux", "windows"} {
					// Remove the last node of that OS, if the mix has one.
					for i := len(nodes) - 1; i >= 0; i-- {
						if nodes[i].OS == os {
							rest := append(nodes[:i:i], nodes[i+1:]...)
							ops = append(ops, op{"remove " + os, rest, nodes[i].Name})
							break
						}
					}
				}
				for _, o := range ops {
					g2, err := BuildGraph(o.nodes, cfg)
					require.NoError(t, err)
					next := edges(g2)
					changed := churn(base, next)
					deg := max(degree(base, o.z), degree(next, o.z))
					t.Logf("%-14s changed %5d of %5d edges, deg(z)=%d", o.name, changed, len(base), deg)
					if len(g.Shortfall) == 0 && len(g2.Shortfall) == 0 {
						assert.LessOrEqual(t, changed, 2*deg, o.name)
					} else {
						dropped := g.Shortfall[o.z] + g2.Shortfall[o.z]
						assert.LessOrEqual(t, changed, 3*(deg+dropped), o.name)
					}
				}
			})
		}
	}
}
