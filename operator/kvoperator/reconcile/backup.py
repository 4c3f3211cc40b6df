"""The imperative shell of backups: ``BackupReconciler`` drives one KVClusterBackup (observe ->
``decide_backup`` -> act -> report), and ``run_restore`` carries out a KVCluster's
``RestoreBackup`` bootstrap action.

Both create Jobs that run the node image's ``ringkv`` CLI with the backup claim mounted: the
operator pod never mounts volumes itself, and the same CLI is what ``ringkv local backup`` /
``restore`` run, so the tested code path is the one Kubernetes runs.
"""

from __future__ import annotations

import datetime
import json
import logging

from kvnode.core.model import PartitionMap

from kvoperator import manifests
from kvoperator.decide import backup as policy
from kvoperator.model import backup as b
from kvoperator.model.names import ClusterNames
from kvoperator.reconcile.ports import KubeApi, Obj

log = logging.getLogger(__name__)

_TERMINAL = (b.BackupPhase.COMPLETED.value, b.BackupPhase.FAILED.value)
# (namespace, cluster, uid) -> the last restore Event reason sent, so each is sent once
_restore_events: dict[tuple[str, str, str], str] = {}


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BackupReconciler:
    """Stateless: every pass reads the backup, its cluster and its Job."""

    def __init__(
        self, kube: KubeApi, *, cluster_domain: str = "cluster.local", default_image: str = ""
    ) -> None:
        self._kube = kube
        self._domain = cluster_domain
        self._default_image = default_image

    async def reconcile_once(self, namespace: str, name: str) -> bool:
        """One pass; True while the backup is not finished."""
        body = await self._kube.get_backup(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False
        previous: Obj = body.get("status") or {}
        if previous.get("phase") in _TERMINAL:
            return False
        names = b.BackupNames(name, namespace)
        try:
            spec = b.parse_backup_spec(body.get("spec"))
        except b.BackupSpecError as e:
            failed = b.BackupStatus(phase=b.BackupPhase.FAILED, message=str(e)).to_dict()
            await self._kube.patch_backup_status(namespace, name, failed)
            await self._kube.emit_event(body, reason="InvalidSpec", message=str(e), warning=True)
            return False
        cluster = await self._kube.get_cluster(namespace, spec.cluster)
        job = await self._kube.job_view(namespace, names.job)
        d = policy.decide_backup(
            spec, names, previous=previous, cluster=cluster, job=job, now=_now_iso(),
            cluster_domain=self._domain, default_image=self._default_image,
        )  # fmt: skip
        owner = manifests.Owner(name, body["metadata"]["uid"], kind=b.KIND)
        for action in d.actions:
            match action:
                case policy.CreateBackupVolume():
                    await self._kube.apply(manifests.backup_volume(spec, names, owner))
                case policy.CreateBackupJob() as job_action:
                    await self._kube.apply(_backup_job(names, owner, job_action))
        status = d.status.to_dict()
        if any(previous.get(k) != v for k, v in status.items()):
            await self._kube.patch_backup_status(namespace, name, status)
        if d.event is not None:
            ev = d.event
            await self._kube.emit_event(
                body, reason=ev.reason, message=ev.message, warning=ev.warning
            )
        return d.status.phase.value not in _TERMINAL


def _backup_job(
    names: b.BackupNames, owner: manifests.Owner, action: policy.CreateBackupJob
) -> Obj:
    return manifests.backup_job(
        names, owner, image=action.image, endpoints=action.endpoints,
        auth_secret=action.auth_secret, tls_secret=action.tls_secret,
    )  # fmt: skip


async def run_restore(
    kube: KubeApi,
    names: ClusterNames,
    owner: manifests.Owner,
    body: Obj,
    *,
    image: str,
    pmap: PartitionMap,
    backup: str,
    auth_secret: str | None = None,
    tls_secret: str | None = None,
) -> None:
    """Start (once) and watch the restore Job of a bootstrapping cluster. Events: one per
    outcome (``RestoreWaiting``, ``RestoreRefused``, ``RestoreStarted``, ``RestoreFailed``,
    ``Restored``), not one per pass."""
    ns = names.namespace
    found = await kube.get_backup(ns, backup)
    status: Obj = (found or {}).get("status") or {}
    if found is None or status.get("phase") != b.BackupPhase.COMPLETED.value:
        what = "does not exist" if found is None else f"is {status.get('phase') or 'Pending'}"
        msg = f"KVClusterBackup {backup} {what}; the restore waits for a Completed backup"
        await _once(kube, names, body, "RestoreWaiting", msg, warning=True, uid=owner.uid)
        return
    if int(status.get("partitions", -1)) != pmap.partitions:
        msg = (
            f"KVClusterBackup {backup} has {status.get('partitions')} partitions but this "
            f"cluster has {pmap.partitions}: a backup restores only into a cluster with the same "
            "partition count"
        )
        await _once(kube, names, body, "RestoreRefused", msg, warning=True, uid=owner.uid)
        return
    job_name = b.restore_job_name(names.name)
    view = await kube.job_view(ns, job_name)
    if view is None:
        job = manifests.restore_job(
            names, owner, image=image, claim=str(status["volumeClaim"]),
            pmap_json=json.dumps(pmap.to_dict(), separators=(",", ":")), auth_secret=auth_secret,
            tls_secret=tls_secret,
        )  # fmt: skip
        await kube.apply(job)
        msg = (
            f"restoring KVClusterBackup {backup} ({status.get('keys')} keys, "
            f"{status.get('sizeBytes')} bytes) into {len(pmap.nodes)} nodes with Job {job_name}"
        )
        await _once(kube, names, body, "RestoreStarted", msg, uid=owner.uid)
    elif view.state is policy.JobState.FAILED:
        tail = " | ".join(view.log.strip().splitlines()[-3:])[-600:]
        msg = f"restore Job {job_name} failed: {tail}"
        await _once(kube, names, body, "RestoreFailed", msg, warning=True, uid=owner.uid)
    elif view.state is policy.JobState.SUCCEEDED:
        msg = f"KVClusterBackup {backup} restored; the epoch-1 map is installed"
        await _once(kube, names, body, "Restored", msg, uid=owner.uid)


async def _once(
    kube: KubeApi,
    names: ClusterNames,
    body: Obj,
    reason: str,
    msg: str,
    *,
    uid: str,
    warning: bool = False,
) -> None:
    key = (names.namespace, names.name, uid)
    if _restore_events.get(key) == reason:
        return
    _restore_events[key] = reason
    log.log(logging.WARNING if warning else logging.INFO, "%s: %s", reason, msg)
    await kube.emit_event(body, reason=reason, message=msg, warning=warning)
