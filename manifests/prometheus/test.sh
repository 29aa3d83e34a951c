#!/usr/bin/env bash
# Checks the Prometheus files of this directory with promtool:
#   promtool check rules rules.yaml
#   promtool test rules rules_test.yaml   (unit tests of every alert)
#   promtool check config prometheus.yaml (and the rules it loads)
# Exits non-zero when any of them fails.
#
# PROMTOOL selects the binary (default: promtool on PATH; Debian package
# "prometheus"). Debian's build leaves out Kubernetes service discovery, so
# it rejects kubernetes_sd_configs; then the config is checked as a copy
# with static targets in their place, which still checks the relabelling,
# the rest of the config and the rule files it loads.
set -euo pipefail

cd "$(dirname "$0")"
PROMTOOL=${PROMTOOL:-promtool}
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
	echo "test.sh: $PROMTOOL not found; install it (Debian: apt-get install -y prometheus) or set PROMTOOL" >&2
	exit 1
fi

"$PROMTOOL" check rules rules.yaml
"$PROMTOOL" test rules rules_test.yaml

# promtool resolves rule_files relative to the config file, so the config is
# checked in place (rules.yaml beside it), or as a copy next to a copy of it.
if out=$("$PROMTOOL" check config prometheus.yaml 2>&1); then
	echo "$out"
elif grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
	echo "test.sh: $PROMTOOL has no Kubernetes service discovery (Debian build); checking prometheus.yaml with static targets in its place"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cp rules.yaml "$tmp/"
	# Replace each kubernetes_sd_configs block (the key and the lines indented
	# deeper than it) with a static target at the same indentation.
	awk '
		skip && (match($0, /^ */) && RLENGTH > indent || /^[[:space:]]*$/) { next }
		{ skip = 0 }
		/^[[:space:]]*kubernetes_sd_configs:/ {
			match($0, /^ */); indent = RLENGTH; skip = 1
			printf "%*sstatic_configs: [{targets: [\"127.0.0.1:9090\"]}]\n", indent, ""
			next
		}
		{ print }
	' prometheus.yaml >"$tmp/prometheus.yaml"
	if grep -q kubernetes_sd_configs "$tmp/prometheus.yaml"; then
		echo "test.sh: could not replace kubernetes_sd_configs" >&2
		exit 1
	fi
	"$PROMTOOL" check config "$tmp/prometheus.yaml"
else
	echo "$out" >&2
	exit 1
fi
echo "test.sh: rules, rule tests and config OK"
