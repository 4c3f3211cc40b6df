#!/usr/bin/env bash
# Prepare the e2e environment (idempotent): etcd from Debian, Kubernetes binaries and helm built
# or reused.
# Called by `./dev test` (and `./dev e2e`) before `pytest e2e -m e2e`. Prints timings.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[e2e-setup] %s\n' "$*" >&2; }
t0=$(date +%s)

if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    log "etcd missing and not root: run 'apt-get install -y etcd-server' as root"; exit 1
  fi
  log "installing etcd-server from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
log "etcd: $(etcd --version | head -1)"
for tool in kubectl openssl unshare nsenter; do
  command -v "$tool" >/dev/null || { log "missing required tool: $tool"; exit 1; }
done
t1=$(date +%s)

BIN=$("$HERE/build-k8s.sh")
t2=$(date +%s)
HELM_BIN=$("$HERE/build-helm.sh")
t3=$(date +%s)
log "kube-apiserver: $("$BIN/kube-apiserver" --version)"
log "helm: $("$HELM_BIN/helm" version --short)"
log "timings: etcd check $((t1 - t0))s, k8s binaries $((t2 - t1))s, helm $((t3 - t2))s, disk: $(du -sh "$BIN" | cut -f1) in $BIN"
