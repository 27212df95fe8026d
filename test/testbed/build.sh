#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned Go module in build/ into a cache outside the git tree.
# Prints the directory that holds the binaries. Re-running with a warm cache builds nothing.
# With --check-go, only checks that the Go on PATH can build them (CI runs that first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# The module's go directive is the oldest Go that builds it, and GOTOOLCHAIN=local (below) forbids fetching
# a newer one: without this check an old Go fails minutes into the build, or with a message about go.mod.
check_go() {
  local need have
  need=$(awk '$1 == "go" {print $2; exit}' "$here/build/go.mod")
  if ! command -v go >/dev/null; then
    echo "build.sh: the test bed's kube-apiserver and etcd are built with Go $need or newer, and there is no go on PATH: install it (https://go.dev/dl/)" >&2
    return 1
  fi
  have=$(GOTOOLCHAIN=local go env GOVERSION)
  have=${have#go}
  if [[ ! $have =~ ^[0-9] ]]; then
    return 0 # a development build of Go: assume it is new enough
  fi
  if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1) != "$need" ]]; then
    echo "build.sh: the test bed's kube-apiserver and etcd are built with Go $need or newer (test/testbed/build/go.mod), and $(command -v go) is Go $have: install a newer Go (https://go.dev/dl/) and put it first on PATH" >&2
    return 1
  fi
}
if [[ ${1:-} == --check-go ]]; then
  check_go
  exit
fi
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
check_go
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
