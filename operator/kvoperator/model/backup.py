"""``KVClusterBackup`` values: its spec, the names of what it owns, and its status (pure).

A backup owns one PersistentVolumeClaim (the backup lives in ``data/`` on it) and one Job that
runs the node image's ``ringkv backup`` against the cluster's nodes with that claim mounted.
A restore (a KVCluster with ``spec.restoreFrom``) runs a Job with the same claim mounted
read-only; that Job belongs to the new KVCluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

KIND = "KVClusterBackup"
PLURAL = "kvclusterbackups"
MOUNT = "/backup"
DATA_SUBDIR = "data"  # the backup directory on the claim
DEFAULT_SIZE = "1Gi"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")


class BackupPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class BackupSpecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BackupSpec:
    cluster: str
    image: str | None = None
    size: str = DEFAULT_SIZE
    storage_class_name: str | None = None


def parse_backup_spec(raw: Mapping[str, Any] | None) -> BackupSpec:
    d = raw or {}
    cluster = d.get("cluster")
    if not isinstance(cluster, str) or not cluster:
        raise BackupSpecError("spec.cluster: the name of a KVCluster is required")
    storage = d.get("storage") or {}
    size = storage.get("size", DEFAULT_SIZE)
    if not isinstance(size, str) or not _QUANTITY.match(size):
        raise BackupSpecError(f"spec.storage.size: {size!r} is not a quantity such as 1Gi")
    image = d.get("image")
    sc = storage.get("storageClassName")
    return BackupSpec(
        cluster=cluster,
        image=image if isinstance(image, str) and image else None,
        size=size,
        storage_class_name=sc if isinstance(sc, str) and sc else None,
    )


@dataclass(frozen=True, slots=True)
class BackupNames:
    name: str
    namespace: str

    @property
    def pvc(self) -> str:
        return f"{self.name}-backup"

    @property
    def job(self) -> str:
        return f"{self.name}-backup"

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "ringkv",
            "app.kubernetes.io/component": "backup",
            "ringkv.io/backup": self.name,
        }


def restore_job_name(cluster: str) -> str:
    return f"{cluster}-restore"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What ``ringkv backup`` printed (its last JSON line) once the Job succeeded."""

    partitions: int
    keys: int
    size_bytes: int
    indexes: Mapping[str, int]
    verified: bool

    @classmethod
    def from_log(cls, text: str) -> BackupResult | None:
        """The result in a Job's log, or None if the log holds none."""
        for line in reversed(text.strip().splitlines()):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "indexes" in doc and "verified" in doc:
                return cls(
                    partitions=int(doc["partitions"]),
                    keys=int(doc["keys"]),
                    size_bytes=int(doc["size_bytes"]),
                    indexes={str(k): int(v) for k, v in doc["indexes"].items()},
                    verified=bool(doc["verified"]),
                )
        return None


@dataclass(frozen=True, slots=True)
class BackupStatus:
    phase: BackupPhase
    message: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    volume_claim: str | None = None
    job: str | None = None
    result: BackupResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase.value, "message": self.message}
        for key, value in (
            ("startedAt", self.started_at),
            ("completedAt", self.completed_at),
            ("volumeClaim", self.volume_claim),
            ("job", self.job),
        ):
            if value is not None:
                out[key] = value
        if self.result is not None:
            r = self.result
            out.update(
                partitions=r.partitions,
                keys=r.keys,
                sizeBytes=r.size_bytes,
                indexes=dict(r.indexes),
                verified=r.verified,
            )
        return out
