"""Replica hosting on disk: registration, seeding a joiner, dropping a replica.

Hosting is local truth: each replica directory holds ``replica.json``, written when the replica
is first opened and removed only with the directory (drop), so a restarted node reopens every
replica it holds — including a joiner the partition map does not list yet. All functions here are
blocking file operations; the GroupManager calls them from worker threads or the ticker.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable

from kvnode.core import files
from kvnode.storage import snapshot
from kvnode.storage.engine import PartitionStore

log = logging.getLogger(__name__)

REPLICA_FILE = "replica.json"  # in a partition dir: this node hosts that replica
SNAPSHOT_FILE = "raft.snapshot"  # PySyncObj's fullDumpFile
SEED_FILE = "raft.snapshot.seed"  # an incoming seed stream, before it is verified


def partition_dir(data_dir: str, partition: int) -> str:
    return os.path.join(data_dir, f"p{partition:05d}")


def registered(data_dir: str) -> dict[int, tuple[str, list[str]]]:
    """Replicas this node hosted when it last ran: ``{partition: (self_addr, peers)}``."""
    out: dict[int, tuple[str, list[str]]] = {}
    if not os.path.isdir(data_dir):
        return out
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name, REPLICA_FILE)
        if not (name.startswith("p") and name[1:].isdigit() and os.path.isfile(path)):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                reg = json.load(f)
            out[int(reg["partition"])] = (str(reg["self_addr"]), [str(x) for x in reg["peers"]])
        except (OSError, ValueError, KeyError, TypeError):
            log.error("ignoring unreadable replica registration %s", path, exc_info=True)
    return out


def write_registration(pdir: str, partition: int, self_addr: str, peers: list[str]) -> None:
    """Record that this node hosts the replica in ``pdir`` (kept if already there)."""
    path = os.path.join(pdir, REPLICA_FILE)
    if os.path.exists(path):
        return
    files.write_json_atomic(path, {"partition": partition, "self_addr": self_addr, "peers": peers})


def install_seed(pdir: str, open_store: Callable[[str], PartitionStore]) -> bytes:
    """Load the verified seed at ``<pdir>/raft.snapshot.seed`` into the replica's store and make
    it the replica's Raft snapshot (PySyncObj then starts right after it); returns its header."""
    seed = os.path.join(pdir, SEED_FILE)
    for name in os.listdir(pdir):  # leftovers of an earlier replica or an interrupted join
        if name.startswith("raft.") and name != SEED_FILE:
            os.remove(os.path.join(pdir, name))
    store = open_store(os.path.join(pdir, "data"))
    try:
        header = store.load_snapshot(seed)
    finally:
        store.close()
    os.replace(seed, os.path.join(pdir, SNAPSHOT_FILE))
    files.fsync_dir(pdir)
    return header


def write_restore_seed(pdir: str, source: str, header: bytes) -> None:
    """Write the seed file of ``pdir`` from the backup file ``source`` with a new ``header``
    (``replica.restore_header``). The items are re-encoded as they are read and the source is
    verified at its end (count and SHA-256) before the seed is renamed into place, so a corrupt
    backup never becomes a seed."""
    os.makedirs(pdir, exist_ok=True)
    with snapshot.SnapshotReader.open(source) as reader:
        snapshot.write_snapshot(os.path.join(pdir, SEED_FILE), header=header, items=reader.items())


def remove_dir(data_dir: str, pdir: str) -> bool:
    """Delete a (closed) replica directory atomically; False if there was none."""
    if not os.path.isdir(pdir):
        return False
    trash = pdir + ".dropping"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(pdir, trash)  # atomic: a crash leaves either the replica or garbage
    files.fsync_dir(data_dir)
    shutil.rmtree(trash, ignore_errors=True)
    return True
