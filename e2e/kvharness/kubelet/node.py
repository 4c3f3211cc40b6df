"""The cluster-facing chores of the process kubelet: its Node, pod binding, and PVC provisioning.

No kube-scheduler runs, so the kubelet binds every unscheduled pod to its own node through the
pods/binding subresource (which also sets PodScheduled=True, exactly as the scheduler's bind
does). No storage provisioner runs either, so for every Pending claim it creates a hostPath
PersistentVolume pre-bound to the claim (`claimRef` with the claim's uid); the real
persistentvolume-binder controller then binds the pair. When a claim is deleted the PV becomes
Released and is deleted together with its directory, like a local-path provisioner with
reclaimPolicy Delete.
"""

from __future__ import annotations

import logging
import platform
import shutil
from pathlib import Path
from typing import Any

from kvharness.kube import ApiError, Kube
from kvharness.kubelet.status import rfc3339

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
PROVISIONED = "ringkv.e2e/provisioned-by"


def node_object(name: str) -> JsonDict:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.ringkv.e2e/process-kubelet": "true",
    }
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def node_status(*, host_ip: str, version: str, now: float, port: int) -> JsonDict:
    """A healthy node's status (what the real kubelet reports; nothing reads resources here)."""
    ts = rfc3339(now)

    def cond(ctype: str, status: str, reason: str) -> JsonDict:
        return {"type": ctype, "status": status, "reason": reason,
                "lastHeartbeatTime": ts, "lastTransitionTime": ts}  # fmt: skip

    resources = {"cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
    return {
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": host_ip},
            {"type": "Hostname", "address": platform.node() or "localhost"},
        ],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "process://ringkv-e2e",
            "osImage": "process kubelet",
            "kernelVersion": platform.release(),
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def register(kube: Kube, name: str, *, host_ip: str, version: str, now: float, port: int) -> None:
    """Create the Node if needed, then (re)write its status; also the periodic heartbeat."""
    try:
        kube.create("/api/v1/nodes", node_object(name))
        log.info("registered node %s", name)
    except ApiError as err:
        if err.status != 409:
            raise
    status = node_status(host_ip=host_ip, version=version, now=now, port=port)
    kube.patch_strategic(f"/api/v1/nodes/{name}/status", {"status": status})


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates_unschedulable(pod: JsonDict) -> bool:
    """The scheduler's NodeUnschedulable rule: a cordoned node takes only pods tolerating its
    `node.kubernetes.io/unschedulable:NoSchedule` taint (DaemonSet pods do)."""
    for t in pod["spec"].get("tolerations") or []:
        key, op = t.get("key"), t.get("operator", "Equal")
        if (key == UNSCHEDULABLE_TAINT or (key in (None, "") and op == "Exists")) and t.get(
            "effect"
        ) in (None, "", "NoSchedule"):
            return True
    return False


def bind_pending(kube: Kube, node: str) -> list[JsonDict]:
    """Bind every unscheduled pod (no scheduling gates, not deleting) to `node`; while the node
    is cordoned (`kubectl cordon`: spec.unschedulable) only pods that tolerate it."""
    pods = kube.get("/api/v1/pods", fieldSelector="spec.nodeName=")["items"]
    if not pods:
        return []
    cordoned = bool(kube.get(f"/api/v1/nodes/{node}").get("spec", {}).get("unschedulable"))
    bound = []
    for pod in pods:
        meta, spec = pod["metadata"], pod["spec"]
        if meta.get("deletionTimestamp") or spec.get("schedulingGates"):
            continue
        if cordoned and not tolerates_unschedulable(pod):
            continue
        ns, name = meta["namespace"], meta["name"]
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }  # fmt: skip
        try:
            kube.create(f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
            bound.append(pod)
        except ApiError as err:
            log.warning("binding %s/%s failed: %s", ns, name, err)
    return bound


def pv_for_claim(claim: JsonDict, path: Path) -> JsonDict:
    """A hostPath PV pre-bound to `claim` (name pvc-<claim uid>, like dynamic provisioners)."""
    meta, spec = claim["metadata"], claim["spec"]
    size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "labels": {PROVISIONED: "process-kubelet"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def provision(kube: Kube, volumes_dir: Path) -> None:
    """Create PVs for Pending claims; delete Released PVs we made, with their data."""
    for claim in kube.get("/api/v1/persistentvolumeclaims")["items"]:
        if claim.get("status", {}).get("phase") != "Pending" or claim["spec"].get("volumeName"):
            continue
        if claim["metadata"].get("deletionTimestamp"):
            continue
        path = volumes_dir / f"pvc-{claim['metadata']['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        try:
            kube.create("/api/v1/persistentvolumes", pv_for_claim(claim, path))
            log.info("provisioned %s for claim %s", path.name, claim["metadata"]["name"])
        except ApiError as err:
            if err.status != 409:
                raise
    pvs = kube.get("/api/v1/persistentvolumes", labelSelector=PROVISIONED)["items"]
    for pv in pvs:
        if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
            continue
        name = pv["metadata"]["name"]
        try:
            kube.delete(f"/api/v1/persistentvolumes/{name}")
        except ApiError as err:
            if err.status != 404:
                raise
        shutil.rmtree(volumes_dir / name, ignore_errors=True)
        log.info("deleted released volume %s", name)


def claim_path(kube: Kube, namespace: str, claim: str, volumes_dir: Path) -> Path | None:
    """Host directory of a Bound claim's volume, or None while it is not bound."""
    pvc = kube.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    if pvc is None or pvc.get("status", {}).get("phase") != "Bound":
        return None
    pv = kube.get_or_none(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    if pv is None:
        return None
    host_path = pv["spec"].get("hostPath", {}).get("path")
    return Path(host_path) if host_path else volumes_dir / pv["metadata"]["name"]
