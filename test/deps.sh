#!/usr/bin/env bash
# Installs the Debian packages a make target needs when they are missing.
# As root it runs apt-get and says what it installs; otherwise it names the
# missing packages and the command, and fails (demo: carries on, since the
# demo runs without Wine and says so). Go itself is expected on PATH.
#
#   test/deps.sh demo | test | e2e
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

case "${1:-}" in
demo) pkgs=(wine wine64 gcc-mingw-w64-x86-64) ;; # xosprobe.exe under Wine, the ProcessPrng shim
test) pkgs=(wine wine64 gcc-mingw-w64-x86-64 prometheus curl iptables iproute2 ipset python3 bc) ;;
e2e) pkgs=(wine wine64 gcc-mingw-w64-x86-64 prometheus curl iptables iproute2 ipset python3 bc runc containernetworking-plugins) ;;
*)
	echo "usage: $0 demo|test|e2e" >&2
	exit 2
	;;
esac

missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

why="Wine and MinGW run the Windows binary; prometheus brings promtool and the server the live tests scrape with; iptables, iproute2, ipset, runc and the CNI plugins build the network namespaces and nodes of the tests"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "deps: installing ${missing[*]} (apt-get; $why)"
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
	echo "deps: installed ${missing[*]}"
	exit 0
fi
echo "deps: make $1 needs ${missing[*]}: run as root, or: sudo apt-get install ${missing[*]}" >&2
[ "$1" = demo ] && exit 0
exit 1
