// Package ebpf collects the kernel's smoothed RTT of the agent's own TCP
// connections with an eBPF program, so a probe learns the RTT of its
// handshake without a syscall of its own (TCP_INFO costs one getsockopt per
// probe).
//
// # Hook: cgroup sock_ops, ACTIVE_ESTABLISHED_CB
//
// A sock_ops program attached to a cgroup runs for the TCP sockets created by
// processes of that cgroup, and only for them: the kernel looks the program
// up in the socket's cgroup, so connections of other containers and of the
// host never run a BPF instruction. That is the "filtered in the kernel" the
// collector needs, with no filter map to maintain. (Once any sock_ops program
// is attached somewhere, the kernel's few sock_ops hook points per connection
// check the socket's cgroup; for other cgroups that finds an empty program
// array. Nothing runs per packet: the program enables no per-packet
// callbacks.)
//
// The program handles one callback, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: the
// kernel calls it when the SYN-ACK of a connect(2) has been processed, after
// the handshake's RTT sample went into srtt and before the connecting thread
// is woken. srtt_us>>3 at that moment is exactly what TCP_INFO's tcpi_rtt
// (and `ss -ti`'s rtt) reports for the fresh socket, so switching the source
// does not shift a dashboard. Passive handshakes (the agent's responder) and
// every other callback return at once and change nothing.
//
// Alternatives on the target kernels, and why not: tp_btf/tcp_probe fires for
// every received segment of every socket on the host, so its filter would run
// per packet for all traffic, and it sees srtt before the segment's ACK is
// processed; filtering a tracepoint by pid or netns is unreliable in softirq
// context, where the SYN-ACK is handled; fentry/fexit and kprobes do not
// attach on the development kernel. sock_ops also needs no BTF, vmlinux.h or
// CO-RE: struct bpf_sock_ops is UAPI, so one object loads on every kernel
// since 5.8 (BPF ring buffers) with cgroup v2.
//
// The cgroup is the process's own (from /proc/self/cgroup, resolved under the
// cgroup2 mount): in a pod, the agent container's cgroup, which holds only
// the agent. Open refuses to pick the root of the hierarchy (an agent run
// outside any container would observe the whole machine); Options.Cgroup
// names another directory, e.g. a dedicated child cgroup.
//
// # From the kernel to a probe result without a syscall
//
// The program writes one 64-byte record per handshake (socket cookie,
// addresses, srtt, min RTT, SYN retransmissions) into a BPF ring buffer and
// submits it with BPF_RB_NO_WAKEUP: nobody sleeps on the ring, so no wake-up
// or epoll round trip is paid per connection. The collector maps the ring
// into its address space and reads records as plain memory (cilium/ebpf's
// ringbuf.Reader would call epoll_wait before every batch).
//
// A probe finds its record by what it knows without asking the kernel: the
// remote address it dialed, and a mark taken just before connect(2). Mark is
// the ring's producer position (one atomic load). The record of the probe's
// handshake is reserved after that position and, since the kernel submits it
// before it wakes the connecting thread, it is in the ring when connect
// returns. Lookup drains the ring into a small table and takes the one record
// for that remote at or after the mark. Two overlapping connects to the same
// remote address leave two candidates; Lookup then reports no reading rather
// than guess, as it does when the kernel dropped records (ring full) since
// the mark, and the caller asks the socket (TCP_INFO). Records nobody claims
// (the agent's other connections: the API server, the aggregator) are
// dropped after Options.MaxAge, and at most four are kept per remote.
//
// A connection whose address the kernel rewrites at connect time
// (socket-level Service load balancing, e.g. Cilium's kube-proxy replacement)
// is recorded under the backend's address, not the one dialed: those lookups
// miss and fall back to TCP_INFO, and the result's source says so.
//
// # Privileges and degradation
//
// Creating the ring needs CAP_BPF, loading a sock_ops program also
// CAP_NET_ADMIN (a networking program type; the kernel checks it at load), or
// CAP_SYS_ADMIN for both. CAP_PERFMON is not needed: the program reads only
// its own context and stores at constant offsets, which the verifier accepts
// without it. Open checks the effective set first and returns an error
// wrapping ErrPermission that names what is missing; no cgroup v2 or a kernel
// without BPF ring buffers or cgroup BPF yields ErrNotSupported. The agent
// logs the reason once and asks each socket instead.
//
// # Measured (development VM, kernel 6.18, 2 vCPUs, shared)
//
// The handshake srtt equals `ss -ti` and TCP_INFO for the same connection
// (0% difference, checked per connection by socket cookie) over veth between
// two namespaces, with and without a 5 ms NFQUEUE hold. The program runs 5
// times per connection (once doing work) for ~225 ns in total; Mark+Lookup
// costs ~300 ns against ~450-850 ns for getsockopt(TCP_INFO). See
// bench/ebpf/run.sh for the CPU comparison of a whole probe.
//
// The BPF C source is bpf/rtt.c; rtt_bpfel.go and rtt_bpfel.o are generated
// by bpf2go (`make generate`) and committed.
package ebpf
