#!/usr/bin/env bash
# Two agent builds measured at the same time, each in its own network
# namespace with its own responder, at one peer count and a 1 s interval
# (static mode, as bench/agent-load.sh). Both see the same host in every
# round, so their ratio moves less than either figure: on this VM one
# build's CPU drifts by +-20% from one minute to the next, and alternating
# rounds (bench/agent-ab.sh) catch that drift only between rounds. Prints
# each round's CPU (% of one core) and B/A, then the median ratio. Needs root.
#
#   bench/agent-pair.sh A_BIN B_BIN [ROUNDS] [SECONDS] [PEERS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/agent-common.sh
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "agent-pair: needs root for network namespaces" >&2; exit 1; }
a=$1 b=$2 rounds=${3:-5} secs=${4:-50} n=${5:-100}
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
namespaces=(xosprobe-pair-a-$$ xosprobe-pair-b-$$)
drop_namespaces() {
  for ns in "${namespaces[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  sleep 0.3
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'drop_namespaces; rm -rf "$work"' EXIT
write_peers "$n" "$work/peers"

bins=("$a" "$b")
for ((r = 1; r <= rounds; r++)); do
  pids=()
  for side in 0 1; do start_responder "${namespaces[$side]}" "${bins[$side]}"; done
  sleep 0.5
  for side in 0 1; do
    start_agent "${namespaces[$side]}" "${bins[$side]}" "$work/peers" "$n" 1s
    pids+=($!)
  done
  sleep 5 # warm up: staggered starts spread over the first interval
  a0=$(cpu "${pids[0]}"); b0=$(cpu "${pids[1]}")
  sleep "$secs"
  a1=$(cpu "${pids[0]}"); b1=$(cpu "${pids[1]}")
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  drop_namespaces
  echo "round $r A $(echo "100*($a1-$a0)/$ticks/$secs" | bc -l | xargs printf %.2f)" \
    "B $(echo "100*($b1-$b0)/$ticks/$secs" | bc -l | xargs printf %.2f)" \
    "B/A $(echo "($b1-$b0)/($a1-$a0)" | bc -l | xargs printf %.3f)" | tee -a "$work/rounds"
done
sort -k8 -n "$work/rounds" | awk '{x[NR] = $8} END {
  med = (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
  printf "B/A: median %.3f, range %.3f-%.3f over %d rounds\n", med, x[1], x[NR], NR
}'
