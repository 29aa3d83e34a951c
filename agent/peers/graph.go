package peers

import (
	"slices"
)

// Graph is the whole probe graph at once: for every agent, exactly what Select
// returns on it. The aggregator or `xosprobe matrix` can use it to show the
// expected pairs and the nodes left uncovered; tests use it to check global
// properties without n calls to Select.
type Graph struct {
	// Peers maps every Linux and Windows node to its agent's peer list.
	Peers map[string][]Peer
	// Shortfall maps each agent that dropped coverage duties to their number
	// (Selection.Shortfall); agents that dropped none are absent.
	Shortfall map[string]int
	// Uncovered lists, sorted by name, the nodes probed by fewer agents of the
	// other OS than the guarantee promises. It is empty unless MaxPeers binds.
	Uncovered []Gap
	// Node counts, as in Selection.
	Linux, Windows, Excluded int
}

// Gap is a node whose cross-OS coverage fell short.
type Gap struct {
	Name string
	OS   OS
	// Probers is how many agents of the other OS probe it; Want is
	// min(MinCrossProbers, number of nodes of the other OS).
	Probers, Want int
}

// BuildGraph computes every agent's selection. The Same edges cost
// O(n log n); the Cross and Coverage edges need every Linux x Windows weight,
// O(n_linux · n_windows): about 6M weights, tens of milliseconds, for 5,000
// nodes split evenly. Prefer Select on agents.
func BuildGraph(nodes []Node, cfg Config) (*Graph, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ix := newIndex(nodes, cfg.Seed)
	g := &Graph{
		Peers:     make(map[string][]Peer, ix.linux+ix.windows),
		Shortfall: map[string]int{},
		Linux:     ix.linux,
		Windows:   ix.windows,
		Excluded:  ix.excluded,
	}
	var class [3][]int32 // entry positions by OS
	for i, e := range ix.entries {
		if e.os != Unknown {
			class[e.os] = append(class[e.os], int32(i))
		}
	}
	name := func(i int32) string { return ix.nodes[ix.entries[i].idx].Name }
	peer := func(i int32, r Reason) Peer {
		e := ix.entries[i]
		n := ix.nodes[e.idx]
		return Peer{Name: n.Name, OS: e.os, Zone: n.Zone, Reason: r}
	}
	out := make(map[int32][]Peer, ix.linux+ix.windows)

	for _, c := range []OS{Linux, Windows} {
		xs := class[c]
		// Same: the class sorted by (ring key, name) is the ring.
		ring := make([]rank, len(xs))
		for j, i := range xs {
			ring[j] = rank{k2: ringKey(ix.entries[i].h), name: name(i), i: i}
		}
		slices.SortFunc(ring, func(a, b rank) int {
			if a.less(b) {
				return -1
			}
			return 1
		})
		same := min(cfg.SameOS, len(xs)-1)
		for j, r := range ring {
			out[r.i] = make([]Peer, 0, same+cfg.CrossOS)
			for d := 1; d <= same; d++ {
				out[r.i] = append(out[r.i], peer(ring[(j+d)%len(ring)].i, Same))
			}
		}

		ys := class[c.other()]
		if len(xs) == 0 || len(ys) == 0 {
			continue
		}
		// Cross and Coverage from class c to the other: rows are agents'
		// picks, columns are targets' designated probers, over one weight matrix.
		k := min(cfg.CrossOS, len(ys))
		m := min(cfg.MinCrossProbers, len(xs))
		src := make([]uint64, len(xs))
		for a, i := range xs {
			src[a] = sourceKey(ix.entries[i].h)
		}
		tgt := make([]uint64, len(ys))
		for b, i := range ys {
			tgt[b] = targetKey(ix.entries[i].h)
		}
		rows := make([]topK, len(xs))
		for a := range rows {
			rows[a] = newTopK(k)
		}
		cols := make([]topK, len(ys))
		for b := range cols {
			cols[b] = newTopK(m)
		}
		// Thresholds: the weight a candidate must reach to enter a row or
		// column (0 while it has room; ties go to the exact order in add).
		colMin := make([]uint64, len(ys))
		for a := range xs {
			row, rowMin, s := &rows[a], uint64(0), src[a]
			for b, t := range tgt {
				w := weight(s, t)
				if k > 0 && w >= rowMin {
					row.add(byWeight(w, name(ys[b]), int32(b)))
					if row.full() {
						rowMin = ^row.worst().k2
					}
				}
				if m > 0 && w >= colMin[b] {
					col := &cols[b]
					col.add(byWeight(w, name(xs[a]), int32(a)))
					if col.full() {
						colMin[b] = ^col.worst().k2
					}
				}
			}
		}
		duties := make([][]rank, len(xs))
		for b := range cols {
			for _, h := range cols[b].items {
				duties[h.i] = append(duties[h.i], byWeight(^h.k2, name(ys[b]), int32(b)))
			}
		}
		probers := make([]int, len(ys))
		for a, i := range xs {
			extra := duties[a][:0]
			for _, d := range duties[a] {
				if !slices.ContainsFunc(rows[a].items, func(p rank) bool { return p.i == d.i }) {
					extra = append(extra, d)
				}
			}
			kept, short := capDuties(extra, cfg.MaxPeers-same-len(rows[a].items))
			if short > 0 {
				g.Shortfall[name(i)] = short
			}
			for _, p := range rows[a].items {
				out[i] = append(out[i], peer(ys[p.i], Cross))
				probers[p.i]++
			}
			for _, d := range kept {
				out[i] = append(out[i], peer(ys[d.i], Coverage))
				probers[d.i]++
			}
		}
		for b, n := range probers {
			if n < m {
				g.Uncovered = append(g.Uncovered, Gap{Name: name(ys[b]), OS: c.other(), Probers: n, Want: m})
			}
		}
	}

	for i, ps := range out {
		sortPeers(ps)
		g.Peers[name(i)] = ps
	}
	slices.SortFunc(g.Uncovered, func(a, b Gap) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return g, nil
}
