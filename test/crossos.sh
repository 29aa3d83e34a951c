#!/usr/bin/env bash
# Cross-OS `xosprobe check` on loopback: a Linux responder checked by the
# Windows binary (under Wine) and a Windows responder checked by the Linux
# binary. Asserts every step passed and that the Windows build timed with QPC
# at under 10 µs. (The agent mesh is tested by TestDemoMeshReportsEveryOSPair.)
set -euo pipefail
linux=${LINUX_BIN:-bin/xosprobe} windows=${WINDOWS_BIN:-bin/xosprobe.exe}
export WINEDEBUG=${WINEDEBUG:--all}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve CMD...: starts a responder on four free loopback ports; sets P_HTTP P_TCP P_ALLOW P_DENY.
serve() {
  P_HTTP=$(free_port) P_TCP=$(free_port) P_ALLOW=$(free_port) P_DENY=$(free_port)
  "$@" serve --http-addr "127.0.0.1:$P_HTTP" --tcp-addr "127.0.0.1:$P_TCP" \
    --allow-addr "127.0.0.1:$P_ALLOW" --deny-addr "127.0.0.1:$P_DENY" >/dev/null &
  pids+=($!)
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$P_HTTP") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "responder from $* did not start" >&2
  return 1
}

# check LABEL CMD...: checks the last responder; prints the table and keeps the JSON.
# The deny port is open (no policy engine on loopback), so netpol-deny is left out
# here; the e2e harness checks it against a real enforcer.
check() {
  local label=$1; shift
  local args=(check --target "127.0.0.1:$P_HTTP" --service "127.0.0.1:$P_HTTP" --allow-target "127.0.0.1:$P_ALLOW")
  "$@" "${args[@]}" --json >"$tmp/$label.json" || true
}

if ! command -v wine >/dev/null || [ ! -f "$windows" ]; then
  echo "crossos: needs wine and $windows (make build; test/wine/setup.sh)" >&2
  exit 1
fi

serve "$linux"
check linux-to-linux "$linux"
check windows-to-linux wine "$windows"
serve wine "$windows"
check linux-to-windows "$linux"

python3 - "$tmp" <<'PY'
import json, os, sys
d = sys.argv[1]
reps = {f[:-5]: json.load(open(os.path.join(d, f))) for f in sorted(os.listdir(d))}
def ms(ns): return f"{ns/1e6:.3f}"
print("summary (ms)              tcp connect   http first_byte   service total   clock (resolution; time.Now)")
for name, rep in reps.items():
    ph = {s["check"]: {p["phase"]: p["ns"] for p in (s.get("result") or {}).get("phases", [])} for s in rep["steps"]}
    row = [ph.get("tcp", {}).get("connect"), ph.get("http", {}).get("first_byte"), ph.get("service", {}).get("total")]
    cells = [ms(v) if v else "-" for v in row]
    print(f"  {name:22} {cells[0]:>12} {cells[1]:>17} {cells[2]:>15}   {rep['clock']['clock']} "
          f"({rep['clock']['stepNs']} ns; {rep['wallClock']['stepNs']} ns)")
for name, rep in reps.items():
    for s in rep["steps"]:
        if s["status"] == "fail":
            r = s["result"]
            print(f"  {name} {s['check']}: {r['outcome']}: {r.get('detail', '')}")
for name, rep in reps.items():
    assert rep["passed"], f"{name}: a step failed"
    ran = [s["check"] for s in rep["steps"] if s["status"] == "pass"]
    assert ran == ["tcp", "http", "service", "netpol-allow"], f"{name}: ran {ran}"
w = reps["windows-to-linux"]
assert w["os"] == "windows" and w["clock"]["clock"] == "qpc", w["clock"]
assert w["clock"]["stepNs"] < 10_000, f"QPC step {w['clock']['stepNs']} ns is not under 10 us"
print("crossos: ok")
PY
