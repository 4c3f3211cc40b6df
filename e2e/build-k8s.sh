#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager from the Go module proxy into a cache outside
# the work tree, keyed by Kubernetes version; skip when both binaries are already there.
# Why this way: no container runtime and no internet here, only Go + the module proxy; the
# wrapper module e2e/k8sbin pins the release (see gen-gomod.sh there).
# Env: RINGKV_CACHE (default ~/.cache/ringkv). Prints the bin directory on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S=$(cat "$HERE/k8sbin/K8S_VERSION")
CACHE=${RINGKV_CACHE:-$HOME/.cache/ringkv}
OUT="$CACHE/k8s-$K8S/bin"
log() { printf '[build-k8s] %s\n' "$*" >&2; }

if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ]; then
  log "reusing $OUT ($K8S)"
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { log "go not found: cannot build Kubernetes $K8S"; exit 1; }
# The build needs ~5 GB (module cache + build cache + binaries); fail early and clearly.
FREE_KB=$(df -Pk "$(go env GOCACHE | xargs dirname)" | awk 'NR==2 {print $4}')
if [ "$FREE_KB" -lt 5000000 ]; then
  log "only $((FREE_KB / 1024)) MB free; the Kubernetes build needs ~5 GB"; exit 1
fi
MINOR=$(echo "$K8S" | cut -d. -f2)
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR"
done
LDF="$LDF -X k8s.io/component-base/version.gitTreeState=clean"
TMP="$OUT.tmp.$$"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
log "building kube-apiserver + kube-controller-manager $K8S (cold: ~7 min on 2 cores, ~3 GB of Go build cache)"
start=$(date +%s)
# nice: other engineers run timing-sensitive tests on this machine at the same time.
# -mod=readonly: the committed go.mod/go.sum are complete; never rewrite them during a build.
(cd "$HERE/k8sbin" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
  nice -n 10 go build -trimpath -ldflags "$LDF" -o "$TMP/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
mkdir -p "$OUT"
mv "$TMP/kube-apiserver" "$TMP/kube-controller-manager" "$OUT/"
log "built in $(($(date +%s) - start)) s into $OUT"
echo "$OUT"
