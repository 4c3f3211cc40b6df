"""Backup under write load, restore into a fresh cluster of a different size (issue 13).

Real node processes, real LevelDB, real Raft groups. The backup's point is defined per
partition: partition p's file holds exactly the effects of its log entries 1..I_p, where I_p is
the manifest's ``index`` (the leader's applied index when it captured, after a read barrier).
A write's version is its log index, so a write is in the backup iff its version <= I_p. Checked:

* every write acknowledged before the backup started has a version <= I_p (the read barrier);
* after restore, every key holds exactly the last acknowledged write with version <= I_p
  (value and version), and keys whose every write came later are absent;
* no write that started after the backup completed is present (its version is > I_p);
* a corrupted backup file is refused, by the restore tool and by the node itself, and leaves
  nothing behind (the same node then restores the intact file).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import pytest
from kvnode.backup import files, take
from kvnode.backup import manifest as mf
from kvnode.client import Client, NodeHttp
from kvnode.core import errors
from kvnode.core.hashing import partition_of
from kvnode.localbackup import restore_into

from tests.support.clusters import ClusterHandle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KEYS = 120
WRITERS = 4


@dataclass(frozen=True)
class Acked:
    key: str
    value: str
    version: int
    started: float
    acked: float


class Writer:
    """Puts distinct values to a fixed key set; records every acknowledged write and every
    write whose outcome is unknown (such a key is not checked for an exact value)."""

    def __init__(self, client: Client, wid: int) -> None:
        self.client, self.wid = client, wid
        self.acked: list[Acked] = []
        self.unknown: set[str] = set()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"k{(n * WRITERS + self.wid) % KEYS:04d}"
            value = f"w{self.wid}-{n}"
            started = time.time()
            try:
                version = await self.client.put(key, value)
            except errors.KvError:
                self.unknown.add(key)
            else:
                self.acked.append(Acked(key, value, version, started, time.time()))
            n += 1


async def _until(pred, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.05)


async def _load(handle, action, writes: int = 150):
    """Run ``action`` while the writers run: at least ``writes`` acknowledged writes before it
    starts and ``writes`` more that started after it returned."""
    client = handle.client(timeout=10.0)
    writers = [Writer(client, i) for i in range(WRITERS)]
    tasks = [asyncio.create_task(w.run()) for w in writers]

    def acked_since(t: float) -> int:
        return sum(1 for w in writers for a in w.acked if a.started > t)

    try:
        await _until(lambda: acked_since(0) >= writes, timeout=60, what="writes before")
        result = await action()
        done = time.time()
        await _until(lambda: acked_since(done) >= writes, timeout=60, what="writes after")
    finally:
        for w in writers:
            w.stop.set()
        await asyncio.gather(*tasks)
        await client.close()
    return result, writers


async def test_backup_under_load_restores_into_a_different_node_count(
    make_cluster, tmp_path, request
):
    source = make_cluster(nodes=3, partitions=8, replication=3)
    await source.wait_ready(timeout=60)
    dest = str(tmp_path / "backup")
    http = NodeHttp()
    times: dict[str, float] = {}

    async def backup() -> mf.Manifest:
        times["start"] = time.time()
        m = await take.take_backup(source.endpoints, dest, http=http)
        times["end"] = time.time()
        return m

    try:
        manifest, writers = await _load(source, backup)
    finally:
        await http.close()
    acked = [a for w in writers for a in w.acked]
    unknown = set().union(*(w.unknown for w in writers))
    assert len(acked) > 200, f"too little load to mean anything: {len(acked)} writes"
    index = manifest.indexes()
    assert files.verify(dest) == manifest

    def part(key: str) -> int:
        return partition_of(key, manifest.partitions)

    before = [a for a in acked if a.acked < times["start"]]
    after = [a for a in acked if a.started > times["end"]]
    assert before, "load must run before the backup started"
    assert after, "load must run after the backup completed"
    late = [a for a in before if a.version > index[part(a.key)]]
    assert not late, f"acknowledged before the backup but not in it: {late[:5]}"
    assert all(a.version > index[part(a.key)] for a in after)

    fresh = request.node.ringkv_clusters.create(nodes=4, partitions=8, replication=3, start=False)
    restored = ClusterHandle(fresh)
    result = await restore_into(fresh, dest, timeout=90)
    assert result["indexes"] == {str(p): i for p, i in index.items()}

    expected: dict[str, Acked] = {}
    for a in sorted(acked, key=lambda a: a.version):
        if a.version <= index[part(a.key)]:
            expected[a.key] = a
    client = restored.client(timeout=10.0)
    try:
        checked = 0
        for i in range(KEYS):
            key = f"k{i:04d}"
            got = await client.get(key)
            if key in unknown:
                continue  # a write of unknown outcome may or may not be in the backup
            want = expected.get(key)
            if want is None:
                assert got is None, f"{key}: restored {got} but no write of it is in the backup"
            else:
                assert got is not None, f"{key}: missing after restore, expected {want}"
                assert (got.value, got.version) == (want.value, want.version), key
                checked += 1
        after_values = {(a.key, a.value) for a in after}
        page = await client.keys("k", limit=1000)
        assert not {(e.key, e.value) for e in page.items} & after_values
        assert len(page.items) == manifest.keys
        assert checked > KEYS // 2
        # The restored cluster takes writes; versions continue after the backup's index.
        version = await client.put("k0000", "after-restore")
        assert version > index[part("k0000")]
        count = len((await client.keys("k", limit=1000)).items)
    finally:
        await client.close()
    # A restored replica restarts like any other (its Raft snapshot is the restored seed).
    victim = fresh.node_ids[1]
    fresh.kill_node(victim)
    fresh.start_node(victim)
    await fresh.wait_ready(timeout=60)
    client = restored.client(timeout=10.0)
    try:
        got = await client.get("k0000")
        assert got is not None
        assert (got.value, got.version) == ("after-restore", version)
        assert len((await client.keys("k", limit=1000)).items) == count
    finally:
        await client.close()


async def test_a_corrupted_backup_is_refused(make_cluster, tmp_path, request):
    source = make_cluster(nodes=3, partitions=4, replication=3)
    await source.wait_ready(timeout=60)
    client = source.client()
    try:
        for i in range(200):
            await client.put(f"c{i:03d}", "x" * 50)
    finally:
        await client.close()
    dest = str(tmp_path / "backup")
    http = NodeHttp()
    try:
        manifest = await take.take_backup(source.endpoints, dest, http=http)
        victim = os.path.join(dest, mf.partition_file(1))
        with open(victim, "r+b") as f:  # noqa: ASYNC230 - flip one byte mid-records
            f.seek(manifest.entries[1].size_bytes // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(files.BackupCorrupt, match=r"partition 1: .*p00001.rkvsnap is corrupt"):
            files.verify(dest)

        target = request.node.ringkv_clusters.create(
            nodes=3, partitions=4, replication=3, start=False
        )
        with pytest.raises(files.BackupCorrupt, match=r"p00001\.rkvsnap is corrupt"):
            await restore_into(target, dest, timeout=60)
        assert not any(target.is_running(n) for n in target.node_ids)

        # The node refuses the corrupt file itself (as it would from a tool that skipped
        # verification), and keeps nothing of it: the intact file restores afterwards.
        os.remove(os.path.join(target.base_dir, "map.json.restoring"))
        target.start_all()
        node = target.pmap.replicas_of(1)[0]
        peers = ",".join(n.raft_addr(1) for n in target.pmap.replicas_of(1))
        await _wait_health(http, node.http_url)
        with open(victim, "rb") as f, pytest.raises(errors.InvalidArgument, match="verification"):  # noqa: ASYNC230 (small test files)
            await http.upload(
                node.http_url, "/v1/admin/partitions/1/restore", f, params={"peers": peers},
                timeout=30,
            )  # fmt: skip
        _, state, _ = await http.call(node.http_url, "GET", "/v1/admin/partitions", timeout=5)
        assert [s["partition"] for s in state["partitions"]] == []
        intact = str(tmp_path / "intact")
        os.makedirs(intact)
        await take.take_backup(source.endpoints, intact, http=http)
        with open(os.path.join(intact, mf.partition_file(1)), "rb") as f:  # noqa: ASYNC230 (small test files)
            body = await http.upload(
                node.http_url, "/v1/admin/partitions/1/restore", f, params={"peers": peers},
                timeout=30,
            )  # fmt: skip
        assert body["keys"] == manifest.entries[1].keys
        assert body["already_hosted"] is False
    finally:
        await http.close()


async def _wait_health(http: NodeHttp, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await http.call(url, "GET", "/healthz", timeout=1)
            return
        except (errors.KvError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _ringkv(*args: str, timeout: float = 180) -> tuple[int, dict]:
    """``ringkv ARGS`` as a user runs it; (exit code, the JSON document it printed)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from kvnode.cli import main; main()", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    text = done.stdout if done.returncode == 0 else done.stderr
    return done.returncode, json.loads(text.strip().splitlines()[-1])


async def test_the_cli_backs_up_and_restores_a_local_cluster(make_cluster, tmp_path):
    from tests.support.addresses import claim_address

    source = make_cluster(nodes=3, partitions=4, replication=3)
    await source.wait_ready(timeout=60)
    client = source.client()
    try:
        versions = {f"cli{i}": await client.put(f"cli{i}", f"v{i}") for i in range(50)}
    finally:
        await client.close()
    dest = str(tmp_path / "bk")
    code, out = await asyncio.to_thread(
        _ringkv, "local", "backup", dest, "--dir", source.cluster.base_dir
    )
    assert code == 0, out
    assert out["verified"] is True
    assert out["keys"] == 50
    code, out = await asyncio.to_thread(_ringkv, "verify-backup", dest)
    assert (code, out["partitions"]) == (0, 4)
    claim = claim_address(partitions=4)
    target = str(tmp_path / "copy")
    try:
        code, out = await asyncio.to_thread(
            _ringkv, "local", "restore", dest, "--dir", target, "--nodes", "5",
            "--host", claim.host, "--base-port", str(claim.base_port),
        )  # fmt: skip
        assert code == 0, out
        assert len(out["endpoints"]) == 5
        async with Client(out["endpoints"]) as c:
            for key, version in versions.items():
                got = await c.get(key)
                assert got is not None
                assert (got.value, got.version) == (f"v{key[3:]}", version)
        # A second restore into the same directory is refused: restore creates new clusters.
        code, err = await asyncio.to_thread(
            _ringkv, "local", "restore", dest, "--dir", target, "--host", claim.host
        )
        assert code == 1
        assert "already holds a local cluster" in err["message"]
    finally:
        from kvnode.local import LocalCluster

        if os.path.exists(os.path.join(target, "cluster.json")):  # noqa: ASYNC240
            LocalCluster.load(target).kill_everything()
        claim.release()
