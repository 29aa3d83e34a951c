package peers

import (
	"fmt"
	"testing"
)

// BenchmarkSelect is one agent's call, the cost paid on every node-list
// change. "minority" is a Windows agent in the skewed mixes, the agent with
// the longest list.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{5000, 50000} {
		for _, bc := range []struct {
			mix     string
			windows int
			self    func(nodes []Node) string
		}{
			{"50-50", n / 2, func(nodes []Node) string { return nodes[n-1].Name }},
			{"3-windows/majority", 3, func(nodes []Node) string { return nodes[n-1].Name }},
			{"3-windows/minority", 3, func(nodes []Node) string { return nodes[0].Name }},
		} {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, bc.mix), func(b *testing.B) {
				nodes := cluster(n, bc.windows)
				self := bc.self(nodes)
				cfg := DefaultConfig()
				cfg.MaxPeers = n // measure the full coverage work, not the cap
				var sel Selection
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if sel, err = Select(self, nodes, cfg); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(sel.Peers)), "peers")
			})
		}
	}
}

func BenchmarkBuildGraph(b *testing.B) {
	for _, bc := range []struct {
		n, windows int
	}{{5000, 2500}, {5000, 3}} {
		b.Run(fmt.Sprintf("nodes=%d/windows=%d", bc.n, bc.windows), func(b *testing.B) {
			nodes := cluster(bc.n, bc.windows)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildGraph(nodes, DefaultConfig()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
