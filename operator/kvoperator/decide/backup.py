"""``decide_backup``: what to do about one KVClusterBackup, from what was observed (pure).

Pending (the cluster is missing or not bootstrapped yet) -> Running (the volume and the Job are
created; the Job runs ``ringkv backup`` against every node of the cluster) -> Completed (the Job
succeeded and printed a verified result) or Failed (the Job failed for good, or succeeded
without a verified result). Completed and Failed are final: nothing is created or changed
afterwards, so a finished backup is never overwritten. Each transition carries one Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from kvoperator.model.backup import BackupNames, BackupPhase, BackupResult, BackupSpec, BackupStatus
from kvoperator.model.names import ClusterNames


class JobState(StrEnum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobView:
    state: JobState
    log: str = ""  # the last pod's log once the Job finished


@dataclass(frozen=True, slots=True)
class CreateBackupVolume:
    pass


@dataclass(frozen=True, slots=True)
class CreateBackupJob:
    image: str
    endpoints: tuple[str, ...]
    auth_secret: str | None = None  # the cluster's spec.auth Secret: the Job uses its credential
    tls_secret: str | None = None  # the cluster's spec.tls Secret: the Job trusts its ca.crt


BackupAction = CreateBackupVolume | CreateBackupJob


@dataclass(frozen=True, slots=True)
class Event:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class BackupDecision:
    actions: tuple[BackupAction, ...]
    status: BackupStatus
    event: Event | None = None


def endpoints(cluster: Mapping[str, Any], namespace: str, cluster_domain: str) -> tuple[str, ...]:
    """Every node URL of the cluster's map (status.replicas nodes, ordinals 0..n-1); https://
    when the cluster has ``spec.tls`` (its nodes serve nothing else)."""
    name = cluster["metadata"]["name"]
    status = cluster.get("status") or {}
    count = int(status.get("replicas") or (cluster.get("spec") or {}).get("replicas") or 0)
    names = ClusterNames(name, namespace, cluster_domain)
    urls = tuple(names.node(o).http_url for o in range(count))
    if _secret_of(cluster, "tls") is None:
        return urls
    return tuple("https://" + u.removeprefix("http://") for u in urls)


def _secret_of(cluster: Mapping[str, Any], field: str) -> str | None:
    """``spec.<field>.secretName`` of a KVCluster object; None when unset."""
    section = (cluster.get("spec") or {}).get(field) or {}
    return str(section.get("secretName") or "") or None


def decide_backup(
    spec: BackupSpec,
    names: BackupNames,
    *,
    previous: Mapping[str, Any],
    cluster: Mapping[str, Any] | None,
    job: JobView | None,
    now: str,
    cluster_domain: str = "cluster.local",
    default_image: str = "",
) -> BackupDecision:
    phase = previous.get("phase")
    if phase in (BackupPhase.COMPLETED.value, BackupPhase.FAILED.value):
        return BackupDecision((), _kept(previous))
    base = BackupStatus(
        phase=BackupPhase.PENDING,
        started_at=previous.get("startedAt"),
        volume_claim=names.pvc,
        job=names.job,
    )
    if job is None:
        return _before_job(spec, names, base, cluster, now, cluster_domain, default_image)
    running = replace(base, phase=BackupPhase.RUNNING, started_at=base.started_at or now)
    if job.state is JobState.ACTIVE:
        return BackupDecision((), replace(running, message=f"Job {names.job} is running"))
    if job.state is JobState.FAILED:
        msg = f"Job {names.job} failed: {_tail(job.log)}"
        failed = replace(running, phase=BackupPhase.FAILED, message=msg, completed_at=now)
        return BackupDecision((), failed, Event("BackupFailed", msg, warning=True))
    result = BackupResult.from_log(job.log)
    if result is None or not result.verified:
        msg = f"Job {names.job} succeeded but printed no verified result: {_tail(job.log)}"
        failed = replace(running, phase=BackupPhase.FAILED, message=msg, completed_at=now)
        return BackupDecision((), failed, Event("BackupFailed", msg, warning=True))
    msg = (
        f"{result.partitions} partitions, {result.keys} keys, {result.size_bytes} bytes, "
        "verified against the leaders' digests"
    )
    done = replace(
        running, phase=BackupPhase.COMPLETED, message=msg, completed_at=now, result=result
    )
    return BackupDecision((), done, Event("BackupCompleted", msg))


def _before_job(
    spec: BackupSpec,
    names: BackupNames,
    base: BackupStatus,
    cluster: Mapping[str, Any] | None,
    now: str,
    cluster_domain: str,
    default_image: str,
) -> BackupDecision:
    if cluster is None:
        return BackupDecision((), replace(base, message=f"KVCluster {spec.cluster} not found"))
    status = cluster.get("status") or {}
    if not status.get("bootstrapped"):
        msg = f"waiting for KVCluster {spec.cluster} to be bootstrapped"
        return BackupDecision((), replace(base, message=msg))
    # The cluster's node image (the operator's default when its spec names none).
    image = spec.image or str((cluster.get("spec") or {}).get("image") or "") or default_image
    urls = endpoints(cluster, names.namespace, cluster_domain)
    msg = f"backing up KVCluster {spec.cluster} ({len(urls)} nodes) with Job {names.job}"
    running = replace(base, phase=BackupPhase.RUNNING, message=msg, started_at=now)
    actions = (
        CreateBackupVolume(),
        CreateBackupJob(
            image=image,
            endpoints=urls,
            auth_secret=_secret_of(cluster, "auth"),
            tls_secret=_secret_of(cluster, "tls"),
        ),
    )
    return BackupDecision(actions, running, Event("BackupStarted", msg))


def _kept(previous: Mapping[str, Any]) -> BackupStatus:
    """A final status as it is (nothing to add)."""
    return BackupStatus(
        phase=BackupPhase(previous["phase"]),
        message=str(previous.get("message", "")),
        started_at=previous.get("startedAt"),
        completed_at=previous.get("completedAt"),
        volume_claim=previous.get("volumeClaim"),
        job=previous.get("job"),
        result=_result(previous),
    )


def _result(previous: Mapping[str, Any]) -> BackupResult | None:
    if "indexes" not in previous:
        return None
    return BackupResult(
        partitions=int(previous.get("partitions", 0)),
        keys=int(previous.get("keys", 0)),
        size_bytes=int(previous.get("sizeBytes", 0)),
        indexes=dict(previous["indexes"]),
        verified=bool(previous.get("verified")),
    )


def _tail(log: str, limit: int = 600) -> str:
    text = " | ".join(line for line in log.strip().splitlines()[-5:] if line)
    return text[-limit:] or "(no log)"
