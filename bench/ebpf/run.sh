#!/usr/bin/env bash
# CPU cost of the eBPF kernel-RTT collector on the probe (needs root).
#
#   bench/ebpf/run.sh [count] [benchtime]
#
# Runs the benchmarks of probe/kernelrtt/ebpf `count` times (default 10) and
# prints the median of every reported metric across runs:
#   BenchmarkProbeCPU     CPU µs per probe, per variant, and the CPU added by
#                         the collector (*-added-%), paired per round
#   BenchmarkBPFRunTime   the BPF program's own run time per connection
#   BenchmarkLookup       Mark+Lookup versus getsockopt(TCP_INFO), ns
# See the comment on BenchmarkProbeCPU for what each variant runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-10}
benchtime=${2:-25000x}
if [ "$(id -u)" != 0 ]; then
	echo "run as root: the benchmarks attach a BPF program and create a cgroup" >&2
	exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench . -benchtime "$benchtime" -count "$count" ./probe/kernelrtt/ebpf/ | tee "$out"
echo
echo "median of $count runs:"
awk '
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (i = 3; i < NF; i += 2) {
			key = name " " $(i + 1)
			if (!(key in n)) order[++keys] = key
			v[key, ++n[key]] = $i
		}
	}
	END {
		for (k = 1; k <= keys; k++) {
			key = order[k]; m = n[key]
			for (i = 1; i <= m; i++) a[i] = v[key, i]
			for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
			split(key, parts, " ")
			printf "  %-32s %-30s %10.2f   (min %.2f, max %.2f)\n", parts[1], parts[2], med, a[1], a[m]
		}
	}' "$out"
