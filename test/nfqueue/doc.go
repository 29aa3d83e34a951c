// Package nfqueue is test support: it delays packets by holding them in an
// iptables NFQUEUE queue — the delay this kernel cannot add with tc netem
// (nft queue does not work here; the iptables NFQUEUE target does) — and
// records the hold it applied, the ground truth latency tests compare with.
// The eBPF collector's tests and the e2e harness both use it.
package nfqueue
