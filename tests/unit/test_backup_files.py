"""Verification of backup directories on disk: every way a file can be wrong is refused with a
message naming the partition and the file, before anything is restored."""

from __future__ import annotations

import json
import os

import pytest
from kvnode.backup import files
from kvnode.backup import manifest as mf
from kvnode.core import model
from kvnode.storage import engine, snapshot
from kvnode.storage.memory import MemoryStore


def _store(partition: int, n: int) -> MemoryStore:
    store = MemoryStore()
    for i in range(n):
        rec = model.Record(value=f"v{partition}-{i}", version=i + 1)
        store.apply(i + 1, puts={f"p{partition}k{i}": rec}, deletes=())
    return store


def make_backup(directory: str, partitions: int = 2, keys: int = 20) -> mf.Manifest:
    entries = []
    for p in range(partitions):
        store = _store(p, keys + p)
        path = os.path.join(directory, mf.partition_file(p))
        snapshot.write_snapshot(path, header=b"h", items=store.iter_dump())
        facts = files.scan_file(path)
        assert facts.digest == store.digest()  # the same digest the node computes
        assert (facts.keys, facts.index) == (keys + p, keys + p)
        entries.append(
            mf.PartitionEntry(
                partition=p,
                file=mf.partition_file(p),
                index=facts.index,
                keys=facts.keys,
                digest=facts.digest,
                size_bytes=facts.size_bytes,
                sha256=facts.sha256,
                items=facts.items,
                source_node="node-0",
                captured_at=1.0,
            )
        )
    m = mf.Manifest(
        partitions=partitions,
        replication=3,
        epoch=1,
        started_at=1.0,
        completed_at=2.0,
        entries=tuple(entries),
        source_map={},
    )
    files.write_manifest(directory, m)
    return m


def test_an_intact_backup_verifies(tmp_path):
    m = make_backup(str(tmp_path))
    assert files.verify(str(tmp_path)) == m
    assert engine.dump_digest(snapshot.read_snapshot(str(tmp_path / "p00000.rkvsnap"))[1])[0] == (
        m.entries[0].digest
    )


def test_no_manifest_means_not_a_complete_backup(tmp_path):
    with pytest.raises(files.BackupCorrupt, match="never completed"):
        files.verify(str(tmp_path))


def test_a_flipped_byte_is_refused(tmp_path):
    m = make_backup(str(tmp_path))
    path = tmp_path / "p00001.rkvsnap"
    raw = bytearray(path.read_bytes())
    raw[m.entries[1].size_bytes // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(files.BackupCorrupt, match=r"partition 1: .*p00001.rkvsnap is corrupt"):
        files.verify(str(tmp_path))


def test_a_truncated_or_missing_file_is_refused(tmp_path):
    make_backup(str(tmp_path))
    path = tmp_path / "p00000.rkvsnap"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        files.BackupCorrupt, match=r"partition 0: .*truncated|partition 0: .*corrupt"
    ):
        files.verify(str(tmp_path))
    path.unlink()
    with pytest.raises(files.BackupCorrupt, match=r"partition 0: .* is missing"):
        files.verify(str(tmp_path))


def test_a_swapped_but_intact_file_fails_the_digest_check(tmp_path):
    """A valid RKVSNAP of other data (e.g. a file from another backup) passes its own checksum;
    the manifest's digest and index catch it."""
    make_backup(str(tmp_path))
    other = _store(0, 5)
    snapshot.write_snapshot(str(tmp_path / "p00000.rkvsnap"), header=b"h", items=other.iter_dump())
    with pytest.raises(files.BackupCorrupt, match=r"partition 0: .*digest .* != manifest"):
        files.verify(str(tmp_path))


def test_an_edited_manifest_is_refused(tmp_path):
    make_backup(str(tmp_path))
    path = tmp_path / mf.MANIFEST_FILE
    doc = json.loads(path.read_text())
    doc["entries"][1]["index"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(files.BackupCorrupt, match=r"partition 1: .*index"):
        files.verify(str(tmp_path))
    path.write_text("{not json")
    with pytest.raises(files.BackupCorrupt, match="cannot read"):
        files.verify(str(tmp_path))


async def test_restore_refuses_another_partition_count_before_touching_a_node(tmp_path):
    from kvnode.backup import restore
    from kvnode.core.model import NodeInfo, PartitionMap

    make_backup(str(tmp_path), partitions=2)
    nodes = [NodeInfo(f"n{i}", "127.0.0.1", 7000 + i, 17000 + 1000 * i) for i in range(3)]
    pmap = PartitionMap.build(
        epoch=1, nodes=nodes, replicas=[("n0", "n1", "n2")] * 3, replication=3
    )

    class NoHttp:  # any call would be a node touched
        def __getattr__(self, name):
            raise AssertionError(f"http.{name} called")

    with pytest.raises(mf.ManifestError, match="2 partitions but the target cluster has 3"):
        await restore.restore_backup(str(tmp_path), pmap, http=NoHttp())  # type: ignore[arg-type]


async def test_restore_refuses_a_corrupt_backup_before_touching_a_node(tmp_path):
    from kvnode.backup import restore
    from kvnode.core.model import NodeInfo, PartitionMap

    make_backup(str(tmp_path), partitions=2)
    (tmp_path / "p00000.rkvsnap").write_bytes(b"RKVSNAP\x00garbage")
    nodes = [NodeInfo("n0", "127.0.0.1", 7000, 17000)]
    pmap = PartitionMap.build(epoch=1, nodes=nodes, replicas=[("n0",)] * 2, replication=1)
    with pytest.raises(files.BackupCorrupt, match=r"partition 0: .*p00000\.rkvsnap is corrupt"):
        await restore.restore_backup(str(tmp_path), pmap, http=None)  # type: ignore[arg-type]
