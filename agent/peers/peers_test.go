package peers

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseOS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want OS
	}{
		{"linux", Linux},
		{"windows", Windows},
		{"Windows", Windows},
		{"LINUX", Linux},
		{"", Unknown},
		{"freebsd", Unknown},
		{"linux ", Unknown},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			assert.Equal(t, tc.want, ParseOS(tc.in))
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"zero value", Config{}, false},
		{"no coverage", Config{SameOS: 3, CrossOS: 3, MaxPeers: 6}, true},
		{"negative", Config{SameOS: -1, CrossOS: 3, MaxPeers: 10}, false},
		{"cap below k", Config{SameOS: 3, CrossOS: 3, MinCrossProbers: 1, MaxPeers: 5}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			_, err = Select("a", []Node{{Name: "a", OS: "linux"}}, tc.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			_, err = BuildGraph(nil, tc.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestSelectErrors(t *testing.T) {
	nodes := []Node{
		{Name: "lin-0", OS: "linux"},
		{Name: "win-0", OS: "windows"},
		{Name: "odd-0", OS: "plan9"},
		{Name: "flip-0", OS: "linux"},
		{Name: "flip-0", OS: "windows"},
	}
	for _, tc := range []struct {
		self string
		err  error
	}{
		{"lin-0", nil},
		{"win-0", nil},
		{"missing", ErrSelfNotFound},
		{"", ErrSelfNotFound},
		{"odd-0", ErrSelfUnknownOS},
		{"flip-0", ErrSelfUnknownOS},
	} {
		t.Run(tc.self, func(t *testing.T) {
			sel, err := Select(tc.self, nodes, DefaultConfig())
			require.ErrorIs(t, err, tc.err)
			assert.Equal(t, 1, sel.Linux)
			assert.Equal(t, 1, sel.Windows)
			assert.Equal(t, 2, sel.Excluded, "plan9 node and the name listed with two OSes")
			if tc.err != nil {
				assert.Empty(t, sel.Peers)
			}
		})
	}
}

// TestSelectTiny checks hand-verifiable selections where every class is
// smaller than k, so each agent must probe everything it may probe.
func TestSelectTiny(t *testing.T) {
	nodes := []Node{
		{Name: "lin-a", OS: "linux", Zone: "z1"},
		{Name: "lin-b", OS: "linux", Zone: "z2"},
		{Name: "win-a", OS: "windows", Zone: "z1"},
		{Name: "ghost", OS: ""},
	}
	for _, tc := range []struct {
		self string
		want []Peer
	}{
		{"lin-a", []Peer{
			{Name: "lin-b", OS: Linux, Zone: "z2", Reason: Same},
			{Name: "win-a", OS: Windows, Zone: "z1", Reason: Cross},
		}},
		{"lin-b", []Peer{
			{Name: "lin-a", OS: Linux, Zone: "z1", Reason: Same},
			{Name: "win-a", OS: Windows, Zone: "z1", Reason: Cross},
		}},
		{"win-a", []Peer{
			{Name: "lin-a", OS: Linux, Zone: "z1", Reason: Cross},
			{Name: "lin-b", OS: Linux, Zone: "z2", Reason: Cross},
		}},
	} {
		t.Run(tc.self, func(t *testing.T) {
			sel, err := Select(tc.self, nodes, DefaultConfig())
			require.NoError(t, err)
			assert.Equal(t, tc.want, sel.Peers)
			assert.Zero(t, sel.Shortfall)
		})
	}
	t.Run("alone", func(t *testing.T) {
		sel, err := Select("solo", []Node{{Name: "solo", OS: "windows"}}, DefaultConfig())
		require.NoError(t, err)
		assert.Empty(t, sel.Peers)
	})
}

// TestGolden pins the hash: agents built from different versions, or for
// different OSes and architectures (run it with GOARCH=386 and GOOS=windows),
// must compute the same graph. Update it only with a deliberate, announced
// change of the scheme.
func TestGolden(t *testing.T) {
	g, err := BuildGraph(goldenNodes, DefaultConfig())
	require.NoError(t, err)
	got := map[string][]string{}
	for a, ps := range g.Peers {
		for _, p := range ps {
			got[a] = append(got[a], p.Name+"/"+p.Reason.String())
		}
	}
	assert.Equal(t, golden12, got)
	assert.Equal(t, uint64(goldenHash), hashName("aks-nodepool1-31415926-vmss000004", 42))
	for a := range golden12 {
		sel, err := Select(a, shuffled(goldenNodes, 3), DefaultConfig())
		require.NoError(t, err)
		assert.Equal(t, g.Peers[a], sel.Peers)
	}
}

// TestDuplicates checks that a name listed twice counts once, and that a
// conflict is resolved the same way whatever the order.
func TestDuplicates(t *testing.T) {
	base := cluster(40, 10)
	g, err := BuildGraph(base, DefaultConfig())
	require.NoError(t, err)

	dup := append(base[:len(base):len(base)], base[3], base[17], base[3])
	gd, err := BuildGraph(dup, DefaultConfig())
	require.NoError(t, err)
	assert.Equal(t, g.Peers, gd.Peers, "exact duplicates must not change the graph")

	// A duplicate in another zone keeps the smallest zone, in either order.
	z := base[5]
	z.Zone = "aaa"
	for _, nodes := range [][]Node{append(shuffled(base, 1), z), append([]Node{z}, base...)} {
		sel, err := Select(base[6].Name, nodes, DefaultConfig())
		require.NoError(t, err)
		for _, p := range sel.Peers {
			if p.Name == z.Name {
				assert.Equal(t, "aaa", p.Zone)
			}
		}
	}

	// A name listed with two OSes is excluded, in either order.
	c := base[20]
	c.OS = "windows"
	if base[20].OS == "windows" {
		c.OS = "linux"
	}
	for _, nodes := range [][]Node{append(shuffled(base, 2), c), append([]Node{c}, base...)} {
		gc, err := BuildGraph(nodes, DefaultConfig())
		require.NoError(t, err)
		assert.NotContains(t, gc.Peers, c.Name)
		for _, ps := range gc.Peers {
			for _, p := range ps {
				assert.NotEqual(t, c.Name, p.Name)
			}
		}
		assert.Equal(t, g.Excluded+1, gc.Excluded)
	}
}

func TestSeed(t *testing.T) {
	nodes := cluster(200, 100)
	a, err := Select(nodes[0].Name, nodes, DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Seed = 7
	b, err := Select(nodes[0].Name, nodes, cfg)
	require.NoError(t, err)
	assert.NotEqual(t, a.Peers, b.Peers)
}

func TestCoverageOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		windows int
		m       int
	}{
		{"off balanced", 500, 0},
		{"off skewed", 5, 0},
		{"m=2 balanced", 500, 2},
		{"m=2 skewed", 5, 2},
		{"m=5 with 3 windows", 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := cluster(1000, tc.windows)
			cfg := DefaultConfig()
			cfg.MinCrossProbers = tc.m
			g, err := BuildGraph(nodes, cfg)
			require.NoError(t, err)
			checkGraph(t, g, nodes, cfg)
			require.Empty(t, g.Shortfall)
			if tc.m == 0 {
				for _, ps := range g.Peers {
					for _, p := range ps {
						require.NotEqual(t, Coverage, p.Reason)
					}
				}
			}
			agreeOnSample(t, g, nodes, cfg, 20)
		})
	}
}

// TestMaxPeers makes coverage impossible and checks the shortfall is
// reported consistently, locally and globally, rather than lost.
func TestMaxPeers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, win   int
		maxPeers int
		m        int
		want     int // uncovered Linux nodes
	}{
		// 1 Windows agent: 3 Cross picks + 7 Coverage slots for 199 Linux nodes.
		{"one windows", 200, 1, 10, 1, 199 - 10},
		// 2 Windows agents, each 1 Same + 3 Cross + 6 Coverage; at most 20 of
		// 198 Linux nodes covered, fewer where both picked the same node.
		{"two windows", 200, 2, 10, 1, -1},
		{"two windows m=2", 200, 2, 10, 2, -1},
		{"enough room", 200, 4, 200, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := cluster(tc.n, tc.win)
			cfg := DefaultConfig()
			cfg.MaxPeers, cfg.MinCrossProbers = tc.maxPeers, tc.m
			g, err := BuildGraph(nodes, cfg)
			require.NoError(t, err)
			checkGraph(t, g, nodes, cfg)
			if tc.want >= 0 {
				assert.Len(t, g.Uncovered, tc.want)
			}
			total := 0
			for _, s := range g.Shortfall {
				total += s
			}
			// Every missing prober is a duty some agent dropped and reported.
			missing := 0
			for _, gap := range g.Uncovered {
				missing += gap.Want - gap.Probers
				assert.Equal(t, Linux, gap.OS)
			}
			assert.LessOrEqual(t, missing, total)
			assert.Equal(t, tc.want == 0, total == 0)
			agreeOnSample(t, g, nodes, cfg, 10)
		})
	}
}

// agreeOnSample checks that Select on sample agents (all minority agents
// and a spread of the rest) returns what BuildGraph computed for them.
func agreeOnSample(t *testing.T, g *Graph, nodes []Node, cfg Config, sample int) {
	t.Helper()
	var lin, win []string
	for _, n := range nodes {
		if _, ok := g.Peers[n.Name]; ok && ParseOS(n.OS) == Linux {
			lin = append(lin, n.Name)
		} else if ok {
			win = append(win, n.Name)
		}
	}
	pick := func(names []string) []string {
		if len(names) <= sample {
			return names
		}
		var out []string
		for i := 0; i < sample; i++ {
			out = append(out, names[i*len(names)/sample])
		}
		return out
	}
	for _, a := range append(pick(lin), pick(win)...) {
		sel, err := Select(a, nodes, cfg)
		require.NoError(t, err)
		require.Equal(t, g.Peers[a], sel.Peers, "Select(%s) disagrees with BuildGraph", a)
		require.Equal(t, g.Shortfall[a], sel.Shortfall, "shortfall of %s", a)
		require.Equal(t, g.Linux, sel.Linux)
		require.Equal(t, g.Windows, sel.Windows)
		require.Equal(t, g.Excluded, sel.Excluded)
	}
}
