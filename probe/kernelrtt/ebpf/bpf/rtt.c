// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// A cgroup sock_ops program: when a TCP connection opened by a socket of the
// attached cgroup completes its handshake (ACTIVE_ESTABLISHED_CB: the SYN-ACK
// has been processed and the kernel has taken its first RTT sample), it pushes
// the connection's addresses and smoothed RTT into a ring buffer. Every other
// callback returns at once and changes nothing (reply stays 0, the kernel's
// default). Sockets of other cgroups never reach this program.
//
// Only UAPI headers are needed: struct bpf_sock_ops is a stable context, so
// there is no vmlinux.h, BTF or CO-RE relocation to go stale.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

char __license[] SEC("license") = "Dual BSD/GPL";

// event is one completed handshake. Addresses are in network byte order,
// ports in host byte order; family says which address form is meaningful.
struct event {
	__u64 cookie;        // socket cookie (SO_COOKIE)
	__u32 srtt_us8;      // tp->srtt_us: smoothed RTT << 3, microseconds
	__u32 rtt_min_us;    // minimum RTT seen, microseconds
	__u32 total_retrans; // SYN retransmissions before the handshake completed
	__u16 family;        // AF_INET or AF_INET6
	__u16 remote_port;
	__u16 local_port;
	__u16 pad;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
};

// Keeps struct event in the object's BTF, for bpf2go's Go type. It lives in
// .bss beside lost: no extra map.
struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); // resized from user space
} events SEC(".maps");

// lost counts events dropped because the ring was full. In .bss, which user
// space reads through a memory mapping, not a syscall.
__u64 lost = 0;

SEC("sockops")
int rtt_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	__u32 family = skops->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return 1;
	}
	e->cookie = bpf_get_socket_cookie(skops);
	e->srtt_us8 = skops->srtt_us;
	e->rtt_min_us = skops->rtt_min;
	e->total_retrans = skops->total_retrans;
	e->family = family;
	e->remote_port = bpf_ntohl(skops->remote_port);
	e->local_port = skops->local_port;
	e->pad = 0;
	// Both address forms are copied and user space picks by family: stores
	// at constant offsets without a branch. Per-family branches let clang
	// merge them into variable-offset pointer arithmetic, which the verifier
	// refuses without CAP_PERFMON (on the ring record) or at all (on ctx).
	e->remote_ip4 = skops->remote_ip4;
	e->local_ip4 = skops->local_ip4;
	e->remote_ip6[0] = skops->remote_ip6[0];
	e->remote_ip6[1] = skops->remote_ip6[1];
	e->remote_ip6[2] = skops->remote_ip6[2];
	e->remote_ip6[3] = skops->remote_ip6[3];
	e->local_ip6[0] = skops->local_ip6[0];
	e->local_ip6[1] = skops->local_ip6[1];
	e->local_ip6[2] = skops->local_ip6[2];
	e->local_ip6[3] = skops->local_ip6[3];
	// No wake-up: nobody waits on this ring. The reader drains it when a
	// probe looks its RTT up, by reading shared memory.
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 1;
}
