"""Backup files on disk: scanning a partition file, the manifest, and whole-backup verification.

Verification re-reads every byte: each partition file must pass the RKVSNAP checks (magic,
item count, SHA-256 trailer), its user records must hash to the manifest's digest (the digest the
node computed from its own LevelDB state at capture time) and its applied index must be the
manifest's. A failure names the partition, the file and what differed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from kvnode.backup import manifest as mf
from kvnode.core import files as core_files
from kvnode.storage import engine, snapshot


class BackupCorrupt(Exception):
    """A backup directory that must not be restored (message says which file and why)."""


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What re-reading one partition file found."""

    keys: int
    digest: str
    index: int
    items: int
    size_bytes: int
    sha256: str


def scan_file(path: str) -> FileFacts:
    """Read and verify the RKVSNAP file at ``path``; raise ``SnapshotCorrupt`` if it is not a
    complete, intact snapshot."""
    applied = 0
    digest = engine.RecordDigest()
    keys = 0
    skip = len(engine.DATA_PREFIX)
    with snapshot.SnapshotReader.open(path) as reader:
        for key, value in reader.items():
            if key.startswith(engine.DATA_PREFIX):
                digest.add(key[skip:], value)
                keys += 1
            elif key == engine.APPLIED_KEY:
                applied = engine.unpack_u64(value)
        info = reader.info
    assert info is not None  # items() finished, so the trailer verified
    return FileFacts(
        keys=keys,
        digest=digest.hexdigest(),
        index=applied,
        items=info.count,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
    )


def write_manifest(directory: str, manifest: mf.Manifest) -> None:
    """Write ``manifest.json`` atomically and durably (the backup's commit point)."""
    body = json.dumps(manifest.to_dict(), indent=1, sort_keys=True).encode("utf-8")
    core_files.write_atomic(os.path.join(directory, mf.MANIFEST_FILE), body)


def read_manifest(directory: str) -> mf.Manifest:
    path = os.path.join(directory, mf.MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            raw: Any = json.load(f)
    except FileNotFoundError:
        raise BackupCorrupt(
            f"{path} does not exist: not a backup directory, or a backup that never completed"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupCorrupt(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise BackupCorrupt(f"{path} is not a JSON object")
    try:
        return mf.Manifest.from_dict(raw)
    except mf.ManifestError as exc:
        raise BackupCorrupt(f"{path}: {exc}") from exc


def check_entry(directory: str, entry: mf.PartitionEntry) -> FileFacts:
    """Re-read one partition file and compare it with its manifest entry."""
    path = os.path.join(directory, entry.file)
    try:
        facts = scan_file(path)
    except FileNotFoundError:
        raise BackupCorrupt(f"partition {entry.partition}: {path} is missing") from None
    except (snapshot.SnapshotCorrupt, ValueError) as exc:
        raise BackupCorrupt(f"partition {entry.partition}: {path} is corrupt: {exc}") from exc
    problems = [
        f"{name} {got!r} != manifest {want!r}"
        for name, got, want in (
            ("digest", facts.digest, entry.digest),
            ("index", facts.index, entry.index),
            ("keys", facts.keys, entry.keys),
            ("sha256", facts.sha256, entry.sha256),
            ("size_bytes", facts.size_bytes, entry.size_bytes),
        )
        if got != want
    ]
    if problems:
        raise BackupCorrupt(f"partition {entry.partition}: {path}: " + "; ".join(problems))
    return facts


def verify(directory: str) -> mf.Manifest:
    """The manifest of the complete, intact backup in ``directory``; ``BackupCorrupt`` else."""
    manifest = read_manifest(directory)
    for entry in manifest.entries:
        check_entry(directory, entry)
    return manifest


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
