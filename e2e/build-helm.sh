#!/usr/bin/env bash
# Build `helm` from its Go module (helm.sh/helm/v3, pinned in e2e/helmbin) into the same cache as
# the Kubernetes binaries, keyed by version; skip when the binary is already there.
# Why: no internet and no prebuilt downloads here, only Go + the module proxy. helm's go.mod has
# no replace directives, but a wrapper module with committed go.mod/go.sum still pins every
# dependency, and -mod=readonly keeps a build from rewriting them.
# Env: RINGKV_CACHE (default ~/.cache/ringkv). Prints the bin directory on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELM=$(cat "$HERE/helmbin/HELM_VERSION")
CACHE=${RINGKV_CACHE:-$HOME/.cache/ringkv}
OUT="$CACHE/helm-$HELM/bin"
log() { printf '[build-helm] %s\n' "$*" >&2; }

if [ -x "$OUT/helm" ]; then
  log "reusing $OUT/helm ($HELM)"
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { log "go not found: cannot build helm $HELM"; exit 1; }
# helm's own Makefile derives the default Kubernetes version of `helm template`/`helm lint`
# (.Capabilities.KubeVersion) from its client-go version: do the same, from the pinned go.mod.
CLIENT_GO=$(awk '$1 == "k8s.io/client-go" {print $2}' "$HERE/helmbin/go.mod")
K8S_MINOR=$(echo "$CLIENT_GO" | cut -d. -f2)
LDF="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM"
LDF="$LDF -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  LDF="$LDF -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$K8S_MINOR"
done
TMP="$OUT.tmp.$$"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
log "building helm $HELM (cold: ~3 min on 2 cores)"
start=$(date +%s)
# nice: other engineers run timing-sensitive tests on this machine at the same time.
(cd "$HERE/helmbin" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
  nice -n 10 go build -trimpath -ldflags "$LDF" -o "$TMP/helm" helm.sh/helm/v3/cmd/helm)
mkdir -p "$OUT"
mv "$TMP/helm" "$OUT/helm"
log "built in $(($(date +%s) - start)) s into $OUT"
echo "$OUT"
