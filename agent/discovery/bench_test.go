package discovery

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"
)

// BenchmarkBuild measures one rebuild from the caches of a 5,000-node cluster.
func BenchmarkBuild(b *testing.B) {
	const n = 5000
	d, err := New(testConfig(fake.NewClientset()))
	require.NoError(b, err)
	idx := map[string]int{}
	for i, in := range d.informers {
		idx[in.name] = i
	}
	pods := d.informers[idx["agent-pods"]].inf.GetIndexer()
	nodes := d.informers[idx["nodes"]].inf.GetIndexer()
	for i := range n {
		os := "linux"
		if i%10 == 0 {
			os = "windows"
		}
		node := fmt.Sprintf("node-%04d", i)
		require.NoError(b, nodes.Add(testNode(node, os, fmt.Sprintf("zone-%d", i%3))))
		require.NoError(b, pods.Add(agentPod("agent-"+node, node, fmt.Sprintf("10.%d.%d.1", i/256, i%256))))
	}
	b.ResetTimer()
	for b.Loop() {
		s, _ := build(&d.cfg, listerSource{d})
		if len(s.Peers) != n {
			b.Fatalf("got %d peers", len(s.Peers))
		}
	}
}
