#!/usr/bin/env bash
# Regenerate go.mod/go.sum of this wrapper module for one Kubernetes release.
# Why: k8s.io/kubernetes requires its staging modules at the fake version v0.0.0 and maps them to
# ./staging/... with replace directives, which Go ignores in dependencies. The main module must
# re-declare every staging replace at the published tag v0.<minor>.<patch>. The list is derived
# from that release's own go.mod, fetched through the Go module proxy (no GitHub raw fetches).
# Usage: e2e/k8sbin/gen-gomod.sh v1.33.13   (then commit go.mod, go.sum; update K8S_VERSION)
set -euo pipefail
K8S=${1:?usage: gen-gomod.sh v1.X.Y}
STG=v0.${K8S#v1.}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$(dirname "${BASH_SOURCE[0]}")"
KGOMOD=$(go mod download -json "k8s.io/kubernetes@$K8S" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
rm -f go.mod go.sum
go mod init ringkv.local/e2e/k8sbin
go mod edit -go="$(sed -n 's/^go //p' "$KGOMOD")"
go mod edit -require="k8s.io/kubernetes@$K8S"
sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/k8s\.io/.*#\1#p' "$KGOMOD" |
  while read -r m; do go mod edit -replace="$m=$m@$STG"; done
# The wrapper is the main module, so k/k's godebug defaults must be copied or Go's apply.
sed -n 's/^godebug //p' "$KGOMOD" | while read -r g; do go mod edit -godebug="$g"; done
go mod tidy
echo "$K8S" > K8S_VERSION
