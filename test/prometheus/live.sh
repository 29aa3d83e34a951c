#!/usr/bin/env bash
# Every dashboard query and every alert rule against a real Prometheus (the
# Debian package) scraping a real agent mesh and aggregator: `xosprobe demo`
# on loopback, with the Windows agents under Wine when available.
#
#   test/prometheus/live.sh [SECONDS]     default 60: how long the mesh runs before querying
#
# Fails when a query does not run, or returns nothing without being listed in
# test/prometheus/empty-ok.txt with its reason, or when the rule file does not load.
set -euo pipefail
cd "$(dirname "$0")/../.."
wait_secs=${1:-60}
command -v prometheus >/dev/null || { echo "live: prometheus not installed (apt-get install prometheus)" >&2; exit 1; }
[ -x bin/xosprobe ] || make build >/dev/null
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

bin/xosprobe demo --refresh 1h --interval 1s >"$tmp/demo.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q "metrics http://" "$tmp/demo.out" 2>/dev/null && [ "$(grep -c 'metrics http://' "$tmp/demo.out")" -ge 4 ] && break; sleep 0.1; done
agg=$(sed -n 's#^aggregator: http://\([^/]*\)/metrics.*#\1#p' "$tmp/demo.out")
[ -n "$agg" ] || { cat "$tmp/demo.out"; echo "live: the demo did not start" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp manifests/prometheus/rules.yaml "$tmp/rules.yaml"
{
  echo "global: {scrape_interval: 2s, evaluation_interval: 2s}"
  echo "rule_files: [rules.yaml]"
  echo "scrape_configs:"
  echo "  - job_name: xosprobe-agent"
  echo "    static_configs:"
  # "  demo-linux-1     linux   probe ports ...  metrics http://127.0.0.1:P/metrics"
  sed -n 's#^  \(demo-[a-z]*-[0-9]*\) .*metrics http://\([^/]*\)/metrics#      - {targets: ["\2"], labels: {node: \1, pod: \1, namespace: xosprobe}}#p' "$tmp/demo.out"
  echo "  - job_name: xosprobe-aggregator"
  echo "    static_configs:"
  echo "      - {targets: [\"$agg\"], labels: {pod: aggregator-0, namespace: xosprobe}}"
} >"$tmp/prometheus.yaml"
prometheus --config.file="$tmp/prometheus.yaml" --storage.tsdb.path="$tmp/tsdb" --web.listen-address="127.0.0.1:$port" \
  --enable-feature=native-histograms >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
echo "live: demo mesh and Prometheus 127.0.0.1:$port running; querying in ${wait_secs}s"
sleep "$wait_secs"
# The demo's aggregator judges regressions by comparing the current minute's
# delta with the minutes before (its 1-minute buckets). Started in the last
# seconds of a minute, the mesh had all its data in one bucket and the
# regression panel comes back empty: query when the
# current and the previous minute both hold data.
while s=$(date +%-S); [ "$s" -lt 8 ] || [ "$s" -gt 50 ]; do sleep 1; done

python3 - "127.0.0.1:$port" dashboards/queries.txt test/prometheus/empty-ok.txt <<'PY'
import json, sys, urllib.parse, urllib.request
base, queries_file, allowed_file = sys.argv[1:]
def get(path, **params):
    url = f"http://{base}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)
allowed = {}
for line in open(allowed_file):
    line = line.rstrip("\n")
    if line and not line.startswith("#"):
        q, _, why = line.partition("\t# ")
        allowed[q] = why
failed, empty_ok = [], 0
queries = [q for q in open(queries_file).read().splitlines() if q.strip()]
for q in queries:
    try:
        res = get("/api/v1/query", query=q)
    except Exception as e:  # a 400 is a query Prometheus rejects
        failed.append(f"ERROR {e}: {q}")
        continue
    data = res["data"]["result"]
    n = len(data) if isinstance(data, list) else 1
    if n == 0:
        if q in allowed:
            empty_ok += 1
        else:
            failed.append(f"EMPTY: {q}")
rules = get("/api/v1/rules")["data"]["groups"]
n_rules = sum(len(g["rules"]) for g in rules)
bad_rules = [r["name"] for g in rules for r in g["rules"] if r.get("health") != "ok"]
firing = sorted({a["labels"]["alertname"] for a in get("/api/v1/alerts")["data"]["alerts"]})
print(f"live: {len(queries)} dashboard queries, {len(queries)-len(failed)-empty_ok} with data, {empty_ok} empty as listed; "
      f"{n_rules} rules loaded, unhealthy: {bad_rules or 'none'}; pending/firing: {firing or 'none'}")
for f in failed:
    print("  " + f)
stale = [q for q in allowed if q not in queries]
for q in stale:
    print("  STALE allow-list entry: " + q)
sys.exit(1 if failed or bad_rules or stale or n_rules == 0 else 0)
PY
