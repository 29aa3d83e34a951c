#!/usr/bin/env bash
# Agent cost at 10, 100 and 1,000 peers, 1 s interval (INTERVAL), static mode. Runs in a
# private network namespace (loopback only), where one responder bound to
# 0.0.0.0 answers for every 127.x.y.z peer address. Needs root.
#
#   bench/agent-load.sh [SECONDS] [PEER COUNTS...]      e.g. bench/agent-load.sh 60 10 100 1000
#
# Prints per peer count: probes/s; the agent's RSS, its anonymous part and its
# file-backed part (the executable's pages), and of the latter what the agent
# read during the measurement (its steady-state working set, from
# /proc/PID/clear_refs; it depends on how the page cache holds the file:
# straight after `go build`, which writes it through a shared mapping, the
# agent read 20 MiB here, likely as whole large folios; a copy of the same
# file, 11 MiB); agent CPU (% of one core); and the floor: the CPU of
# as many bare TCP connects per second, in the same bursts, with no probe
# around them (bench/connectfloor; on loopback both ends of every handshake
# are charged to the connecting process, for the agent and the floor alike);
# and the CPU of the responder (`xosprobe serve`, the same build) that
# answers every probe: its accepts, reads, writes and closes, not the
# handshakes (charged to the agent, as above). On a cluster each agent also
# answers about as many probes as it sends, so a node's agent costs about
# the agent column plus the responder column.
# AGENT_FLAGS adds agent flags, e.g. AGENT_FLAGS="--coalesce 0";
# XOSPROBE_BIN picks another build of the agent to compare; FLOOR=0 skips
# the floor (bench/agent-ab.sh compares two builds that way); INTERVAL sets
# the agent's --interval (default 1s; the shipped manifests use 10s), and the
# floor, which mimics 1 s, is then skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/agent-common.sh
secs=${1:-30}; shift || true
interval=${INTERVAL:-1s}
counts=("${@:-10 100 1000}")
[ "$(id -u)" = 0 ] || { echo "agent-load: needs root for a network namespace" >&2; exit 1; }
[ -x bin/xosprobe ] || make bin/xosprobe >/dev/null
bin=${XOSPROBE_BIN:-bin/xosprobe}
floor=$(mktemp -d)/connectfloor
go build -o "$floor" ./bench/connectfloor
ns=xosprobe-bench-$$
cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; sleep 0.2; ip netns del "$ns" 2>/dev/null || true; rm -rf "$(dirname "$floor")"; }
trap cleanup EXIT
start_responder "$ns" "$bin"
server=$!
sleep 0.5

kib() { awk -v k="$1" '$1 == k":" {printf "%.1f", $2/1024}' "/proc/$2/status"; }
ticks=$(getconf CLK_TCK)
printf '%-6s %9s %8s %8s %8s %9s %10s %10s %10s\n' peers probes/s rss-MiB anon-MiB file-MiB file-used cpu-%core floor-%core resp-%core
for n in ${counts[@]}; do
  peers=$(mktemp)
  write_peers "$n" "$peers"
  # shellcheck disable=SC2086 # AGENT_FLAGS holds several flags
  start_agent "$ns" "$bin" "$peers" "$n" "$interval" ${AGENT_FLAGS:-}
  pid=$!
  sleep 5 # warm up: staggered starts spread over the first interval
  echo 1 >"/proc/$pid/clear_refs"
  a0=$(cpu "$pid"); r0=$(cpu "$server")
  p0=$(ip netns exec "$ns" curl -s 127.0.0.1:20445/metrics | awk '/^xosprobe_probe_total/ {s+=$2} END {print s+0}')
  sleep "$secs"
  a1=$(cpu "$pid"); r1=$(cpu "$server")
  p1=$(ip netns exec "$ns" curl -s 127.0.0.1:20445/metrics | awk '/^xosprobe_probe_total/ {s+=$2} END {print s+0}')
  rss=$(kib VmRSS "$pid"); anon=$(kib RssAnon "$pid"); file=$(kib RssFile "$pid")
  # Referenced file-backed pages of the agent's own executable since clear_refs.
  used=$(awk -v exe="$(readlink -f "$bin")" '/^[0-9a-f]+-/ {m = ($6 == exe)} m && /^Referenced:/ {s+=$2} END {printf "%.1f", s/1024}' "/proc/$pid/smaps")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$peers"
  fl=-
  if [ "${FLOOR:-1}" != 0 ] && [ "$interval" = 1s ]; then
    fl=$(ip netns exec "$ns" "$floor" -peers "$n" -seconds "$secs" | sed -n 's/.*: \([0-9.]*\)% of a core.*/\1/p')
  fi
  printf '%-6s %9.0f %8s %8s %8s %9s %10.2f %10s %10.2f\n' "$n" "$(echo "($p1-$p0)/$secs" | bc -l)" "$rss" "$anon" "$file" "$used" \
    "$(echo "100*($a1-$a0)/$ticks/$secs" | bc -l)" "$fl" "$(echo "100*($r1-$r0)/$ticks/$secs" | bc -l)"
done
