package peers

import "strings"

// Salts derive a node's independent keys from its name hash. Changing any of
// them reshuffles every selection, so they are part of the wire contract
// between agents of different versions.
const (
	saltRing   = 0x6a09e667f3bcc908
	saltSource = 0xbb67ae8584caa73b
	saltTarget = 0x3c6ef372fe94f82b
)

// mix64 is the splitmix64 finalizer: a bijection with full avalanche, so keys
// that differ in a few bits (or by a constant XOR) give unrelated outputs.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashName hashes a node name. It assembles 8-byte words explicitly in
// little-endian order so Linux and Windows agents, on any architecture, compute
// the same value; hash/maphash would not (its seeds are per process).
func hashName(s string, seed uint64) uint64 {
	h := mix64(seed ^ uint64(len(s))*0x9e3779b97f4a7c15)
	for len(s) >= 8 {
		v := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		h = mix64(h ^ v)
		s = s[8:]
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		v |= uint64(s[i]) << (8 * i)
	}
	return mix64(h ^ v)
}

func ringKey(h uint64) uint64   { return mix64(h ^ saltRing) }
func sourceKey(h uint64) uint64 { return mix64(h ^ saltSource) }
func targetKey(h uint64) uint64 { return mix64(h ^ saltTarget) }

// weight is the rendezvous weight of the directed pair (agent, target), from
// the agent's source key and the target's target key. Distinct key sets per
// role keep w(a,b) and w(b,a) independent.
func weight(source, target uint64) uint64 { return mix64(source ^ target) }

// rank orders candidates ascending by (k1, k2, name). Every ordering in the
// package is expressed in it, so Select and BuildGraph cannot disagree on ties.
type rank struct {
	k1, k2 uint64
	name   string
	i      int32 // position in the caller's slice
}

func (a rank) less(b rank) bool {
	if a.k1 != b.k1 {
		return a.k1 < b.k1
	}
	if a.k2 != b.k2 {
		return a.k2 < b.k2
	}
	return a.name < b.name
}

// byWeight ranks a candidate by descending weight, then ascending name.
func byWeight(w uint64, name string, i int32) rank { return rank{k2: ^w, name: name, i: i} }

// byRing ranks a ring member by its clockwise distance from the origin (r0,
// name0): members after the origin in (ring key, name) order come first, in that
// order, then the members before it. This is the cycle order of the sorted ring.
func byRing(r uint64, name string, r0 uint64, name0 string, i int32) rank {
	lap := uint64(0)
	if r < r0 || (r == r0 && name < name0) {
		lap = 1
	}
	return rank{k1: lap, k2: r, name: name, i: i}
}

// topK keeps the k best ranks seen so far, sorted best first.
type topK struct {
	k     int
	items []rank
}

func newTopK(k int) topK { return topK{k: k, items: make([]rank, 0, k)} }

// full reports whether a candidate must beat worst() to get in.
func (t *topK) full() bool { return len(t.items) == t.k }

func (t *topK) worst() rank { return t.items[len(t.items)-1] }

func (t *topK) add(c rank) {
	if t.k == 0 {
		return
	}
	if t.full() {
		if !c.less(t.worst()) {
			return
		}
		t.items = t.items[:len(t.items)-1]
	}
	i := len(t.items)
	t.items = append(t.items, c)
	for i > 0 && c.less(t.items[i-1]) {
		t.items[i] = t.items[i-1]
		i--
	}
	t.items[i] = c
}

// ParseOS classes the value of a node's kubernetes.io/os label.
func ParseOS(s string) OS {
	switch {
	case s == "linux" || strings.EqualFold(s, "linux"):
		return Linux
	case s == "windows" || strings.EqualFold(s, "windows"):
		return Windows
	}
	return Unknown
}
