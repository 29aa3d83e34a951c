package peers

import (
	"errors"
	"fmt"
	"slices"
)

// Node is one entry of the agent's node list (its informer cache).
type Node struct {
	Name string
	// OS is the node's kubernetes.io/os label; see ParseOS.
	OS string
	// Zone is carried into Peer for the caller; it does not influence selection.
	Zone string
}

// OS is the class a node's OS label falls in.
type OS uint8

const (
	// Unknown covers every label other than linux and windows (including an
	// empty one) and names listed twice with different OS values. Such nodes run
	// no agent of ours, so they neither probe nor are probed.
	Unknown OS = iota
	Linux
	Windows
)

// String returns the metric label value: "linux", "windows" or "unknown".
func (o OS) String() string {
	switch o {
	case Linux:
		return "linux"
	case Windows:
		return "windows"
	}
	return "unknown"
}

func (o OS) other() OS {
	switch o {
	case Linux:
		return Windows
	case Windows:
		return Linux
	}
	return Unknown
}

// Reason says why a peer was selected. The values are bounded label values.
type Reason uint8

const (
	// Same: a ring successor of the agent among nodes of its own OS.
	Same Reason = iota + 1
	// Cross: one of the agent's own rendezvous picks among nodes of the other OS.
	Cross
	// Coverage: the agent is one of the peer's designated probers from the
	// other OS, and the peer is not among its Cross picks. On a minority-OS agent
	// these are most of the list; a scheduler may probe them at a lower rate.
	Coverage
)

// String returns "same", "cross" or "coverage".
func (r Reason) String() string {
	switch r {
	case Same:
		return "same"
	case Cross:
		return "cross"
	case Coverage:
		return "coverage"
	}
	return "unknown"
}

// Peer is one node an agent probes.
type Peer struct {
	Name   string
	OS     OS
	Zone   string
	Reason Reason
}

// Config sets the shape of the probe graph. Every agent must use the same
// values, or their selections stop fitting together.
type Config struct {
	// SameOS (k_same) is how many nodes of its own OS each agent probes.
	SameOS int
	// CrossOS (k_cross) is how many nodes of the other OS each agent picks.
	CrossOS int
	// MinCrossProbers (m) is how many agents of the other OS must probe every
	// node. Zero turns coverage off.
	MinCrossProbers int
	// MaxPeers caps one agent's list. It binds only on a minority-OS agent that
	// has more coverage duties than it can take; what it drops is reported as
	// Selection.Shortfall. It must be at least SameOS+CrossOS.
	MaxPeers int
	// Seed reshuffles the whole graph when changed.
	Seed uint64
}

// Defaults; see the package documentation for the load they imply.
const (
	DefaultSameOS          = 3
	DefaultCrossOS         = 3
	DefaultMinCrossProbers = 1
	DefaultMaxPeers        = 2048
)

// DefaultConfig returns the defaults, sized for clusters of up to 5,000 nodes.
func DefaultConfig() Config {
	return Config{
		SameOS:          DefaultSameOS,
		CrossOS:         DefaultCrossOS,
		MinCrossProbers: DefaultMinCrossProbers,
		MaxPeers:        DefaultMaxPeers,
	}
}

// ErrInvalidConfig is wrapped by every Config.Validate error.
var ErrInvalidConfig = errors.New("peers: invalid config")

// Validate reports a Config that Select would reject.
func (c Config) Validate() error {
	switch {
	case c.SameOS < 0 || c.CrossOS < 0 || c.MinCrossProbers < 0:
		return fmt.Errorf("%w: SameOS=%d, CrossOS=%d and MinCrossProbers=%d must not be negative",
			ErrInvalidConfig, c.SameOS, c.CrossOS, c.MinCrossProbers)
	case c.MaxPeers < 1 || c.MaxPeers < c.SameOS+c.CrossOS:
		return fmt.Errorf("%w: MaxPeers=%d must be at least 1 and at least SameOS+CrossOS=%d",
			ErrInvalidConfig, c.MaxPeers, c.SameOS+c.CrossOS)
	}
	return nil
}

var (
	// ErrSelfNotFound: the agent's own node is not in the list (yet).
	ErrSelfNotFound = errors.New("peers: own node not in node list")
	// ErrSelfUnknownOS: the agent's own node is classed Unknown.
	ErrSelfUnknownOS = errors.New("peers: own node has no linux or windows OS label")
)

// Selection is one agent's peer list and the facts behind it.
type Selection struct {
	// OS is the agent's own class.
	OS OS
	// Peers is sorted by name and never contains the agent itself.
	Peers []Peer
	// Shortfall counts the coverage duties this agent dropped to stay within
	// MaxPeers. Each dropped target may have fewer than MinCrossProbers probers
	// of this agent's OS; summed over agents it bounds the cluster-wide gap
	// (BuildGraph reports the exact uncovered nodes). Export it: a non-zero value
	// means the cross-OS guarantee does not hold for this cluster shape.
	Shortfall int
	// Node counts after de-duplication. Excluded are empty names and nodes
	// classed Unknown; they are never selected.
	Linux, Windows, Excluded int
}

// Select returns the peers the agent on node self probes. nodes is the full
// node list; its order does not matter. It is safe for concurrent use and
// does not modify nodes.
func Select(self string, nodes []Node, cfg Config) (Selection, error) {
	if err := cfg.Validate(); err != nil {
		return Selection{}, err
	}
	ix := newIndex(nodes, cfg.Seed)
	sel := Selection{Linux: ix.linux, Windows: ix.windows, Excluded: ix.excluded}
	si := ix.lookup(self, cfg.Seed)
	if si < 0 {
		return sel, fmt.Errorf("%w: %q", ErrSelfNotFound, self)
	}
	me := ix.entries[si]
	if me.os == Unknown {
		return sel, fmt.Errorf("%w: %q", ErrSelfUnknownOS, self)
	}
	sel.OS = me.os

	// Split the other nodes by class; xs excludes the agent itself.
	type member struct {
		key uint64 // ring key for the agent's class, target key for the other
		src uint64 // source key, agent's class only
		i   int32
	}
	xs := make([]member, 0, ix.count(me.os)-1)
	ys := make([]member, 0, ix.count(me.os.other()))
	for i, e := range ix.entries {
		switch {
		case int32(i) == si:
		case e.os == me.os:
			xs = append(xs, member{key: ringKey(e.h), src: sourceKey(e.h), i: int32(i)})
		case e.os == me.os.other():
			ys = append(ys, member{key: targetKey(e.h), i: int32(i)})
		}
	}
	name := func(i int32) string { return ix.nodes[ix.entries[i].idx].Name }

	// Same: the next SameOS members of the agent's class on the ring.
	r0 := ringKey(me.h)
	ring := newTopK(min(cfg.SameOS, len(xs)))
	for _, x := range xs {
		ring.add(byRing(x.key, name(x.i), r0, self, x.i))
	}

	// Cross: the agent's CrossOS highest-weight nodes of the other class.
	src0 := sourceKey(me.h)
	picks := newTopK(min(cfg.CrossOS, len(ys)))
	for yi, y := range ys {
		w := weight(src0, y.key)
		if picks.full() && w < ^picks.worst().k2 {
			continue // cheap reject; ties fall through to the exact order
		}
		picks.add(byWeight(w, name(y.i), int32(yi)))
	}
	picked := func(yi int) bool {
		for _, p := range picks.items {
			if p.i == int32(yi) {
				return true
			}
		}
		return false
	}

	// Coverage: the targets whose column of weights ranks this agent among its
	// top m. Counting the agents that beat it stops at m, and an agent with
	// weight u is beaten after ~1/(1-u) tries, so a column costs O(m·log n_x)
	// on average instead of n_x.
	m := min(cfg.MinCrossProbers, len(xs)+1)
	var duties []rank
	if m > 0 {
		for yi, y := range ys {
			if picked(yi) {
				continue
			}
			u := weight(src0, y.key)
			beaten := 0
			for _, x := range xs {
				w := weight(x.src, y.key)
				if w > u || (w == u && name(x.i) < self) {
					if beaten++; beaten == m {
						break
					}
				}
			}
			if beaten < m {
				duties = append(duties, byWeight(u, name(y.i), int32(yi)))
			}
		}
	}
	duties, sel.Shortfall = capDuties(duties, cfg.MaxPeers-len(ring.items)-len(picks.items))

	peer := func(i int32, r Reason) Peer {
		e := ix.entries[i]
		n := ix.nodes[e.idx]
		return Peer{Name: n.Name, OS: e.os, Zone: n.Zone, Reason: r}
	}
	sel.Peers = make([]Peer, 0, len(ring.items)+len(picks.items)+len(duties))
	for _, r := range ring.items {
		sel.Peers = append(sel.Peers, peer(r.i, Same))
	}
	for _, p := range picks.items {
		sel.Peers = append(sel.Peers, peer(ys[p.i].i, Cross))
	}
	for _, d := range duties {
		sel.Peers = append(sel.Peers, peer(ys[d.i].i, Coverage))
	}
	sortPeers(sel.Peers)
	return sel, nil
}

// capDuties keeps the highest-weight duties that fit in room and returns how
// many it dropped. Preferring high weights keeps the kept set stable as duties
// come and go, like the rest of the selection.
func capDuties(duties []rank, room int) ([]rank, int) {
	room = max(room, 0)
	if len(duties) <= room {
		return duties, 0
	}
	slices.SortFunc(duties, func(a, b rank) int {
		if a.less(b) {
			return -1
		}
		return 1
	})
	return duties[:room], len(duties) - room
}

func sortPeers(ps []Peer) {
	slices.SortFunc(ps, func(a, b Peer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}

// index is the de-duplicated node list.
type index struct {
	nodes   []Node
	entries []entry
	table   []int32 // open addressing on entry.h; entry position + 1, 0 = empty
	linux   int
	windows int
	// excluded counts empty names and Unknown entries.
	excluded int
}

type entry struct {
	h   uint64
	idx int32 // representative in nodes: among duplicates, the smallest Zone
	os  OS
}

func newIndex(nodes []Node, seed uint64) *index {
	size := 2
	for size < 2*len(nodes) {
		size <<= 1
	}
	ix := &index{nodes: nodes, entries: make([]entry, 0, len(nodes)), table: make([]int32, size)}
	mask := uint64(size - 1)
	for i := range nodes {
		n := &nodes[i]
		if n.Name == "" {
			ix.excluded++
			continue
		}
		h := hashName(n.Name, seed)
		os := ParseOS(n.OS)
		for slot := h & mask; ; slot = (slot + 1) & mask {
			p := ix.table[slot]
			if p == 0 {
				ix.entries = append(ix.entries, entry{h: h, idx: int32(i), os: os})
				ix.table[slot] = int32(len(ix.entries))
				break
			}
			e := &ix.entries[p-1]
			if e.h != h || nodes[e.idx].Name != n.Name {
				continue
			}
			// A name listed twice: keep it only if every copy agrees on the OS,
			// so the outcome does not depend on which copy comes first.
			if e.os != os {
				e.os = Unknown
			}
			if n.Zone < nodes[e.idx].Zone {
				e.idx = int32(i)
			}
			break
		}
	}
	for _, e := range ix.entries {
		switch e.os {
		case Linux:
			ix.linux++
		case Windows:
			ix.windows++
		default:
			ix.excluded++
		}
	}
	return ix
}

// lookup returns the entry position of name, or -1.
func (ix *index) lookup(name string, seed uint64) int32 {
	if name == "" {
		return -1
	}
	h := hashName(name, seed)
	mask := uint64(len(ix.table) - 1)
	for slot := h & mask; ; slot = (slot + 1) & mask {
		p := ix.table[slot]
		if p == 0 {
			return -1
		}
		if e := ix.entries[p-1]; e.h == h && ix.nodes[e.idx].Name == name {
			return p - 1
		}
	}
}

func (ix *index) count(o OS) int {
	switch o {
	case Linux:
		return ix.linux
	case Windows:
		return ix.windows
	}
	return 0
}
