package ebpf

// The BPF object and its Go bindings are committed; `make generate` rebuilds
// them with Debian's clang (clang-14) and libbpf-dev's headers. The include
// path is Debian's multiarch directory, where <asm/types.h> lives.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -tags linux -type event rtt bpf/rtt.c -- -I/usr/include/x86_64-linux-gnu
