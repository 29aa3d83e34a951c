#!/usr/bin/env bash
# Two agent builds (or settings) compared at one peer count, in alternating
# rounds of bench/agent-load.sh, with the median and range of each: on this
# VM one build's CPU varies by +-20% between single runs, more than most
# changes a run is meant to show. Needs root.
#
#   bench/agent-ab.sh OLD_BIN NEW_BIN [ROUNDS] [SECONDS] [PEERS]
#
# A and B may be the same binary with different AGENT_FLAGS_A / AGENT_FLAGS_B.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-7} secs=${4:-20} peers=${5:-100}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for side in A B; do
    if [ $side = A ]; then bin=$a flags=${AGENT_FLAGS_A:-}; else bin=$b flags=${AGENT_FLAGS_B:-}; fi
    cpu=$(FLOOR=0 XOSPROBE_BIN=$bin AGENT_FLAGS=$flags bench/agent-load.sh "$secs" "$peers" | awk 'NR == 2 {print $7}')
    echo "round $r $side $cpu" | tee -a "$out"
  done
done
for side in A B; do
  awk -v s=$side '$3 == s {print $4}' "$out" | sort -n | awk -v s=$side '{x[NR] = $1} END {
    med = (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
    printf "%s: median %.2f%% of a core, range %.2f-%.2f over %d runs\n", s, med, x[1], x[NR], NR
  }'
done
