"""The backup manifest: a pure description of one backup directory (no I/O here).

Layout of a backup directory::

    manifest.json              written last, atomically: a directory without it is incomplete
    p00000.rkvsnap ...         one file per partition, the RKVSNAP stream of its leader

A partition file is the partition's state after applying log entries 1..``index`` of its group
(``index`` = the store's applied index at the capture). Partitions are captured one after the
other, each at its own index: the backup is per-partition point-in-time, not one cluster-wide
instant (see node/DESIGN.md, "Backup and restore").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT = "ringkv-backup"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


class ManifestError(ValueError):
    """The manifest is missing, malformed, or does not fit the restore target."""


def partition_file(partition: int) -> str:
    return f"p{partition:05d}.rkvsnap"


@dataclass(frozen=True, slots=True)
class PartitionEntry:
    """One partition's file: ``index`` is the log index it is consistent at, ``keys`` the user
    records in it, ``digest`` the replica digest (``kvnode.storage.engine.dump_digest``) that
    the node computed from the same state, ``sha256``/``items`` the RKVSNAP trailer."""

    partition: int
    file: str
    index: int
    keys: int
    digest: str
    size_bytes: int
    sha256: str
    items: int
    source_node: str
    captured_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "file": self.file,
            "index": self.index,
            "keys": self.keys,
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "items": self.items,
            "source_node": self.source_node,
            "captured_at": self.captured_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartitionEntry:
        try:
            entry = cls(
                partition=_int(d, "partition"),
                file=str(d["file"]),
                index=_int(d, "index"),
                keys=_int(d, "keys"),
                digest=str(d["digest"]),
                size_bytes=_int(d, "size_bytes"),
                sha256=str(d["sha256"]),
                items=_int(d, "items"),
                source_node=str(d["source_node"]),
                captured_at=float(d["captured_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"malformed partition entry {dict(d)!r}: {exc}") from exc
        if entry.file != partition_file(entry.partition):
            raise ManifestError(f"partition {entry.partition} names file {entry.file!r}")
        return entry


@dataclass(frozen=True, slots=True)
class Manifest:
    """A complete backup: every partition of a cluster of ``partitions`` partitions, the
    partition map it was taken under (for the record; a restore places partitions anew)."""

    partitions: int
    replication: int
    epoch: int
    started_at: float
    completed_at: float
    entries: tuple[PartitionEntry, ...]
    source_map: dict[str, Any]
    version: int = FORMAT_VERSION

    @property
    def size_bytes(self) -> int:
        return sum(e.size_bytes for e in self.entries)

    @property
    def keys(self) -> int:
        return sum(e.keys for e in self.entries)

    def indexes(self) -> dict[int, int]:
        return {e.partition: e.index for e in self.entries}

    def summary(self, where: str) -> dict[str, Any]:
        """What the commands print about a verified backup in directory ``where``."""
        return {
            "dir": where,
            "partitions": self.partitions,
            "keys": self.keys,
            "size_bytes": self.size_bytes,
            "indexes": {str(p): i for p, i in self.indexes().items()},
            "seconds": round(self.completed_at - self.started_at, 3),
            "verified": True,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "partitions": self.partitions,
            "replication": self.replication,
            "epoch": self.epoch,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "size_bytes": self.size_bytes,
            "keys": self.keys,
            "entries": [e.to_dict() for e in self.entries],
            "source_map": self.source_map,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise ManifestError(f"not a ringkv backup manifest (format {d.get('format')!r})")
        if d.get("version") != FORMAT_VERSION:
            raise ManifestError(
                f"backup format version {d.get('version')!r} is not supported (this ringkv "
                f"reads version {FORMAT_VERSION})"
            )
        try:
            raw_entries = list(d["entries"])
            manifest = cls(
                partitions=_int(d, "partitions"),
                replication=_int(d, "replication"),
                epoch=_int(d, "epoch"),
                started_at=float(d["started_at"]),
                completed_at=float(d["completed_at"]),
                entries=tuple(PartitionEntry.from_dict(e) for e in raw_entries),
                source_map=dict(d["source_map"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"malformed backup manifest: {exc}") from exc
        manifest.check_complete()
        return manifest

    def check_complete(self) -> None:
        """Exactly one entry per partition, in order."""
        got = [e.partition for e in self.entries]
        if got != list(range(self.partitions)):
            missing = sorted(set(range(self.partitions)) - set(got))
            raise ManifestError(
                f"backup lists partitions {got[:10]}... for a cluster of {self.partitions} "
                f"partitions (missing {missing[:10]})"
            )


def check_target(manifest: Manifest, *, partitions: int) -> None:
    """A backup restores only into a cluster with the same partition count: keys map to
    partitions by ``stable_hash(key) mod P``, so a different P would put keys where no request
    looks for them."""
    if partitions != manifest.partitions:
        raise ManifestError(
            f"the backup has {manifest.partitions} partitions but the target cluster has "
            f"{partitions}: a backup restores only into a cluster with the same partition count"
        )


def _int(d: Mapping[str, Any], name: str) -> int:
    value = d[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{name} must be an integer >= 0, got {value!r}")
    return value
