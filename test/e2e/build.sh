#!/usr/bin/env bash
# Builds the binaries of the e2e cluster-in-a-box from the Go module proxy:
# etcd, kube-apiserver, kube-controller-manager, kube-proxy, kubelet,
# kube-scheduler, kubectl, containerd (with its runc shim and ctr), coredns, kube-router
# and prometheus. Each comes from a nested tools module under tools/ so that the
# main go.mod never sees their dependency graphs (they conflict with each other
# too: kube-router and coredns pin older k8s.io libraries than Kubernetes).
#
# Idempotent: a binary is rebuilt only when its stamp (version, Go version and
# the hash of its tools module's go.mod/go.sum) changed. The Go build cache
# ($GOCACHE) makes a rebuild after a stamp change take seconds, a cold build
# several minutes.
#
#   test/e2e/build.sh                 build what is missing into test/e2e/.cache/bin
#   XOSPROBE_E2E_BIN=/dir build.sh    build into /dir instead
#   build.sh --print-bin              print the output directory and exit
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${XOSPROBE_E2E_BIN:-$here/.cache/bin}
# shellcheck source=versions.env
source "$here/versions.env"

if [ "${1:-}" = --print-bin ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 # static binaries, no C toolchain needed; upstream ships them this way too
gover=$(go env GOVERSION)

# require_version DIR MODULE VERSION: fails when tools/DIR pins another version
# than versions.env says, so the two can't drift apart silently.
require_version() {
	local got
	got=$(cd "$here/tools/$1" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$2")
	if [ "$got" != "$3" ]; then
		echo "build.sh: tools/$1 requires $2 $got but versions.env says $3;" >&2
		echo "          run: (cd $here/tools/$1 && go get $2@$3 && go mod tidy)" >&2
		exit 1
	fi
}

# build NAME... -- DIR VERSION GOFLAGS_LDFLAGS PKG...: builds PKG... in
# tools/DIR into $out, naming the binaries NAME... (same order), unless every
# one of them is present with a matching stamp. Packages of one family are
# built in one go command so their shared dependencies compile once. $TAGS,
# when set, are the build tags (part of the stamp).
build() {
	local names=()
	while [ "$1" != -- ]; do names+=("$1"); shift; done
	shift
	local dir=$1 version=$2 ldflags=$3
	shift 3
	local key
	key="$version ${TAGS:-} $gover $(cd "$here/tools/$dir" && find . -maxdepth 1 \( -name '*.go' -o -name 'go.*' \) | sort | xargs cat | sha256sum | cut -c1-16)"
	local stale=false n
	for n in "${names[@]}"; do
		if [ ! -x "$out/$n" ] || [ "$(cat "$out/.$n.stamp" 2>/dev/null)" != "$key" ]; then stale=true; fi
	done
	if ! $stale; then
		echo "build.sh: ${names[*]} $version: up to date"
		return
	fi
	echo "build.sh: building ${names[*]} $version"
	local tmp start=$SECONDS
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	(cd "$here/tools/$dir" && go build -trimpath -tags "${TAGS:-}" -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
	local pkg i=0
	for pkg in "$@"; do
		# go build -o DIR/ names each binary after the last element of its package path.
		local bin
		bin=$(basename "$pkg")
		[ "$pkg" = . ] && bin=$dir # a module's root package is named after the module: tools/DIR
		mv "$tmp/$bin" "$out/${names[$i]}"
		echo "$key" >"$out/.${names[$i]}.stamp"
		i=$((i + 1))
	done
	rmdir "$tmp"
	echo "build.sh: built ${names[*]} in $((SECONDS - start))s"
}

require_version kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
require_version kubernetes k8s.io/client-go "$KUBERNETES_STAGING_VERSION"
require_version etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
require_version coredns github.com/coredns/coredns "$COREDNS_VERSION"
require_version kube-router github.com/cloudnativelabs/kube-router/v2 "$KUBE_ROUTER_VERSION"
require_version prometheus github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
require_version containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION"

kv=${KUBERNETES_VERSION#v}
k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=${kv%%.*}"
	k8s_ldflags+=" -X $p.gitMinor=$(echo "$kv" | cut -d. -f2) -X $p.gitTreeState=clean"
done

total=$SECONDS
build etcd -- etcd "$ETCD_VERSION" "" .
# kubectl: the e2e runs the README's kubectl exec line as an operator would.
build kube-apiserver kube-controller-manager kube-proxy kubelet kube-scheduler kubectl -- kubernetes "$KUBERNETES_VERSION" "$k8s_ldflags" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-proxy \
	k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
# The kubelet nodes' runtime: 2.4 is built against kubelet 1.37's CRI
# (cri-api v0.37); Debian's 1.6 is far older. Without cgo btrfs drops
# out by itself; devmapper and zfs are left out (overlayfs and native serve).
TAGS=no_btrfs,no_devmapper,no_zfs build containerd containerd-shim-runc-v2 ctr -- containerd "$CONTAINERD_VERSION" \
	"-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=module-proxy" \
	github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
	github.com/containerd/containerd/v2/cmd/ctr
build coredns -- coredns "$COREDNS_VERSION" "" github.com/coredns/coredns
build kube-router -- kube-router "$KUBE_ROUTER_VERSION" \
	"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
	github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
# Debian's prometheus package is built without Kubernetes service discovery,
# which the shipped scrape config uses; this one has only that SD (the tags
# leave out the cloud providers' SDs and their SDKs). No web UI assets
# (tag builtinassets): the e2e uses the HTTP API only.
pv=$PROMETHEUS_VERSION
TAGS=remove_all_sd,enable_kubernetes_sd build prometheus -- prometheus "$PROMETHEUS_MODULE_VERSION" \
	"-X github.com/prometheus/common/version.Version=${pv#v} -X github.com/prometheus/common/version.Branch=module-proxy" \
	github.com/prometheus/prometheus/cmd/prometheus
echo "build.sh: binaries in $out ($((SECONDS - total))s)"
