#!/usr/bin/env bash
# Agent cost at 10, 100 and 1,000 peers, 1 s interval, static mode. Runs in a
# private network namespace (loopback only), where one responder bound to
# 0.0.0.0 answers for every 127.x.y.z peer address. Needs root.
#
#   bench/agent-load.sh [SECONDS] [PEER COUNTS...]      e.g. bench/agent-load.sh 60 10 100 1000
#
# Prints per peer count: probes/s, agent RSS and its anonymous part (MiB; the
# rest is the binary's mapped text), agent CPU (% of one core).
# AGENT_FLAGS adds agent flags, e.g. AGENT_FLAGS="--quantum 100ms".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}; shift || true
counts=("${@:-10 100 1000}")
[ "$(id -u)" = 0 ] || { echo "agent-load: needs root for a network namespace" >&2; exit 1; }
[ -x bin/xosprobe ] || make bin/xosprobe >/dev/null
ns=xosprobe-bench-$$
ip netns add "$ns"
cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; sleep 0.2; ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip -n "$ns" link set lo up
ip netns exec "$ns" bin/xosprobe serve --node peers >/dev/null 2>&1 &
sleep 0.5

ticks=$(getconf CLK_TCK)
printf '%-6s %10s %10s %10s %12s\n' peers probes/s rss-MiB anon-MiB cpu-%core
for n in ${counts[@]}; do
  peers=$(mktemp)
  for ((i = 0; i < n; i++)); do echo "peer-$i=windows@127.1.$((i / 250)).$((i % 250 + 1))"; done >"$peers"
  ip netns exec "$ns" bin/xosprobe agent --node self --listen-ip 127.0.0.1 --port-base 20440 --admin-addr 127.0.0.1:20445 \
    --peers-file "$peers" --k-cross "$n" --max-peers "$((n + 3))" --interval 1s --timeout 900ms --deny-timeout 200ms \
    --shutdown-delay 0s --log-level error ${AGENT_FLAGS:-} &
  pid=$!
  sleep 5 # warm up: staggered starts spread over the first interval
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
  p0=$(ip netns exec "$ns" curl -s 127.0.0.1:20445/metrics | awk '/^xosprobe_probe_total/ {s+=$2} END {print s+0}')
  sleep "$secs"
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
  p1=$(ip netns exec "$ns" curl -s 127.0.0.1:20445/metrics | awk '/^xosprobe_probe_total/ {s+=$2} END {print s+0}')
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)
  anon=$(awk '/RssAnon/ {printf "%.1f", $2/1024}' /proc/$pid/status)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$peers"
  printf '%-6s %10.0f %10s %10s %12.2f\n' "$n" "$(echo "($p1-$p0)/$secs" | bc -l)" "$rss" "$anon" \
    "$(echo "100*(($u1+$s1)-($u0+$s0))/$ticks/$secs" | bc -l)"
done
