# Sourced by bench/agent-load.sh and bench/agent-pair.sh: the static-mode
# agent they measure, set up one way.

# cpu PID: the process's user + system ticks so far.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# write_peers N FILE: N static Windows peers at 127.1.x.y, all answered by
# one responder bound to 0.0.0.0 in the namespace.
write_peers() {
  for ((i = 0; i < $1; i++)); do echo "peer-$i=windows@127.1.$((i / 250)).$((i % 250 + 1))"; done >"$2"
}

# start_responder NS BIN: network namespace NS with loopback up, and BIN's
# responder in it answering for every peer, in the background ($! is its PID).
start_responder() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip netns exec "$1" "$2" serve --node peers >/dev/null 2>&1 &
}

# start_agent NS BIN PEERS_FILE N INTERVAL [FLAGS...]: the agent in NS in the
# background ($! is its PID).
start_agent() {
  local ns=$1 bin=$2 peers=$3 n=$4 interval=$5
  shift 5
  ip netns exec "$ns" "$bin" agent --node self --listen-ip 127.0.0.1 --port-base 20440 --admin-addr 127.0.0.1:20445 \
    --peers-file "$peers" --k-cross "$n" --max-peers "$((n + 3))" --interval "$interval" --timeout 900ms --deny-timeout 200ms \
    --shutdown-delay 0s --log-level error "$@" &
}
