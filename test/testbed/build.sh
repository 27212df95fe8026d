#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned Go module in build/ into a cache outside the git tree.
# Prints the directory that holds the binaries. Re-running with a warm cache builds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module_version() { awk -v m="$1" '$1==m && $2 ~ /^v/ {print $2; exit}' "$here/build/go.mod"; }
kube_version=$(module_version k8s.io/kubernetes)
etcd_version=$(module_version go.etcd.io/etcd/server/v3)
key=$(cat "$here/build/go.mod" "$here/build/go.sum" | sha256sum | cut -c1-12)
cache_root=${KSCTL_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ksctl-testbed}
out="$cache_root/kube-$kube_version-etcd-$etcd_version-$key"
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly
minor=$(echo "$kube_version" | cut -d. -f2)
stamp="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
start=$(date +%s)
cd "$here/build"
echo "building kube-apiserver $kube_version and etcd $etcd_version into $out (cold builds take minutes)" >&2
go build -trimpath -ldflags "-s -w $stamp" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out" && mv "$out.tmp" "$out"
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$out"
