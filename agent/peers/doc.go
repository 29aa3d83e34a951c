// Package peers chooses which nodes an xosprobe agent probes: a bounded,
// deterministic, OS-aware subset that still covers every Windows<->Linux path.
//
// Every agent calls Select with its own node name and the node list from its
// informer cache, and computes its own peer list without talking to anyone.
// The result depends only on the set of (name, OS) pairs and the Config: not
// on list order, on zones, or on which agent computes it. Agents with the same
// node list therefore agree on the whole probe graph. Name hashing is explicit
// little-endian arithmetic, so Linux and Windows builds on any architecture
// agree (TestGolden pins it). Changing the hashing changes every selection.
//
// # Classes
//
// ParseOS classes a node's kubernetes.io/os label as Linux or Windows,
// ignoring case. Anything else is Unknown: an empty or other label, an empty
// name, or a name listed twice with different OS values. The agent DaemonSets
// select on that label, so an Unknown node runs no agent and no responder. It
// is never probed, and Select on it fails with ErrSelfUnknownOS. Counts are
// reported in Selection.Excluded. A name listed twice with the same OS counts
// once.
//
// # Scheme
//
// Each name hashes to three independent 64-bit keys: a ring key, a source key
// and a target key. The weight of the directed pair (a, b) is
// w(a,b) = mix(source(a) XOR target(b)). The probe graph is the union of three
// edge sets. Here n_a is the number of nodes of agent a's OS, n_o the number of
// the other OS, and k_same, k_cross and m are Config.SameOS, Config.CrossOS and
// Config.MinCrossProbers.
//
//   - Same: the nodes of each OS, sorted by ring key, form a cycle. Each agent
//     probes the next min(k_same, n_a-1) nodes after it. This is rendezvous
//     hashing with the weight "minus the clockwise distance", i.e. consistent
//     hashing. It has the same minimal churn as independent weights, but every
//     rank becomes a permutation. So every node has exactly that many same-OS
//     probers. With independent weights the in-degree would be Poisson(k), and
//     e^-3, about 5% of nodes, would go unprobed by their own OS at k = 3.
//   - Cross: each agent probes the min(k_cross, n_o) nodes of the other OS
//     with the highest w(agent, ·). This is plain rendezvous hashing (the row
//     of the weight matrix).
//   - Coverage: each node b is probed by the min(m, n_o) agents of the other
//     OS with the highest w(·, b) (the column of the same matrix). This is
//     what makes the guarantee hold under any skew. With 3 Windows and 3,000
//     Linux nodes, each Windows agent takes about 1,000 Linux targets, because
//     every Linux column is topped by one of only three Windows rows. The
//     weight is shared with Cross, so in an even cluster most Coverage edges
//     are already Cross edges (about 1 in 8 is extra at k_cross = 3). Peer.Reason
//     says Coverage only for the extra ones.
//
// Select computes the agent's Coverage row without the whole matrix. It counts
// the other agents that beat it in each column and stops at m. An agent with
// weight u is beaten after about 1/(1-u) tries, so a column costs
// O(m·log n_a) on average. A call is O(n) hashing plus O(n_o·m·log n_a).
// BuildGraph computes everyone's selection at once; its Cross and Coverage
// part is O(n_linux·n_windows).
//
// # Guarantees
//
// For every node list and valid Config:
//
//  1. No self-edges, at most one edge per ordered pair, and no edge to or from
//     an Unknown node.
//  2. Every agent has exactly min(k_same, n_a-1) Same peers and exactly
//     min(k_cross, n_o) Cross peers. Every node has exactly min(k_same, n-1)
//     same-OS probers, where n is the size of its own OS class.
//  3. Cross-OS coverage in both directions: every node is probed by at least
//     min(m, n_o) agents of the other OS. The one exception is item 4.
//  4. Out-degree never exceeds MaxPeers. Same and Cross peers always fit,
//     because Validate requires MaxPeers >= k_same+k_cross. When an agent's
//     Coverage duties do not fit in the remaining room, it keeps the
//     highest-weight ones and drops the rest. The count goes in
//     Selection.Shortfall: coverage is reported short, never silently dropped.
//     Dropped duties are not passed to another agent, because that would need
//     every agent's load, i.e. the whole matrix. So a target whose duty was
//     dropped keeps only the probers it had anyway: its Cross pickers, if any,
//     and its same-OS probers. Graph.Uncovered lists the nodes left below
//     min(m, n_o), and the sum of the agents' shortfalls bounds that number.
//     Full coverage needs roughly n_minority·(MaxPeers-k_same-k_cross) >=
//     m·n_majority.
//  5. Churn: adding or removing one node z changes only edges incident to z,
//     plus at most one edge that each of those edges displaced: a
//     predecessor's last ring successor, an agent's lowest Cross pick, or a
//     column's lowest-ranked Coverage prober. That is at most 2·deg(z)
//     changed edges. When MaxPeers binds, an agent whose duties changed may
//     also drop or re-admit one duty per change, so the bound becomes at most
//     3·(deg(z) + duties z dropped). deg(z) is about 2·(k_same+k_cross) except
//     for a minority-OS node in a skewed cluster. Such a node is probed by
//     about n_majority·k_cross/n_minority agents, and those edges have to move
//     when it comes or goes.
//
// Balance is statistical where it cannot be exact. Same in-degree is exact.
// Coverage adds exactly min(m, n_o) probers per node before capping. Cross
// in-degree is Binomial(n_o, k_cross/n_a) around its mean (compare the
// Poisson(3) tail in the even case). Zone is not used for selection; it is only
// carried into Peer.
//
// # Load with the defaults (k_same = 3, k_cross = 3, m = 1, MaxPeers = 2048)
//
// Figures are peers per agent (out) and probers per node (in) for one probe
// round, measured by TestClusterProperties on 5,000 nodes:
//
//   - 2,500 Linux and 2,500 Windows: out mean 6.1, max 11; in mean 6.1, max 15.
//     About 30,600 probed pairs in total, 2% of them Coverage.
//   - 500 Windows and 4,500 Linux: Linux agents 6 peers, each Linux node probed
//     by 4.1 on average (max 8). Windows agents 12.6 on average (max 24), each
//     Windows node probed by 30 on average (max 49).
//   - 3 Windows and 4,997 Linux: Linux agents 6 peers (3 Linux plus all 3
//     Windows), each Linux node probed by 3 Linux agents and 1 Windows agent.
//     Windows agents about 1,670 peers each (max 1,694), and each Windows node
//     is probed by all 4,997 Linux agents. That inbound load is what
//     "every agent probes k_cross nodes of the other OS" costs; lower CrossOS
//     to reduce it.
//   - 1 Windows and 4,999 Linux: the Windows agent needs 4,999 peers and is
//     capped at 2,048. Its Shortfall is 2,951, and 2,951 Linux nodes are
//     probed from Linux only.
//
// The cluster total is about n·(k_same+k_cross) plus the extra Coverage edges,
// which add at most m·n. MaxPeers is 2,048 so that 3 minority nodes can cover
// 5,000 nodes at m = 1. A minority agent's Coverage peers are marked so the
// scheduler can spread them, or run fewer checks against them, to limit
// connection churn on Windows (ephemeral ports, TIME_WAIT).
//
// Select takes about 0.3 ms for 5,000 nodes and about 3 ms for 50,000 on a
// 2-core VM (BenchmarkSelect), and about 7 ms for a Windows agent that covers
// 16,600 Linux nodes out of 50,000.
package peers
