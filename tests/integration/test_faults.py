"""Crash faults on real node processes: no acknowledged write may be lost.

A write counts as acknowledged when the client got a success. Writes that ended in
``UnknownOutcome`` (the node died while the write was in flight) may or may not have applied;
they are checked to hold either their value or nothing — never anything else.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from kvnode.client import Client
from kvnode.core import errors, hashing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


class WriteLoad:
    """Bounded write load (count and time) recording what was acknowledged."""

    def __init__(self, client: Client, *, prefix: str, workers: int = 8) -> None:
        self.client = client
        self.prefix = prefix
        self.workers = workers
        self.acked: dict[str, str] = {}
        self.unknown: dict[str, str] = {}
        self.failed: list[str] = []
        self._stop = asyncio.Event()

    async def _worker(self, w: int, max_ops: int) -> None:
        for n in range(max_ops):
            if self._stop.is_set():
                return
            key, value = f"{self.prefix}/{w}/{n}", f"v{w}-{n}"
            try:
                await self.client.put(key, value)
                self.acked[key] = value
            except errors.UnknownOutcome:
                self.unknown[key] = value
            except errors.KvError as exc:
                self.failed.append(f"{key}: {exc.code}")

    async def run(self, *, max_ops: int = 400) -> None:
        await asyncio.gather(*(self._worker(w, max_ops) for w in range(self.workers)))

    def stop(self) -> None:
        self._stop.set()


async def verify(handle, load: WriteLoad) -> None:
    async with handle.client(timeout=20.0) as c:
        for key, value in load.acked.items():
            entry = await c.get(key)
            assert entry is not None, f"acknowledged write {key} lost"
            assert entry.value == value
        for key, value in load.unknown.items():
            entry = await c.get(key)
            assert entry is None or entry.value == value


async def test_kill_leader_during_write_load_loses_no_acknowledged_write(cluster) -> None:
    info = await cluster.wait_ready()
    partitions = info["map"]["partitions"]
    async with cluster.client(timeout=15.0) as c:
        load = WriteLoad(c, prefix="k9")
        runner = asyncio.create_task(load.run(max_ops=300))
        await asyncio.sleep(1.5)
        victim = info["leaders"]["0"]
        cluster.cluster.kill_node(victim)
        await asyncio.sleep(4.0)
        load.stop()
        await asyncio.wait_for(runner, 60)
    assert len(load.acked) > 100, f"too few writes acknowledged: {len(load.acked)}"
    assert not load.failed, f"non-retriable failures: {load.failed[:10]}"
    # the partitions the victim led were re-elected on the survivors
    survivors = [n for n in cluster.cluster.node_ids if n != victim]
    after = await cluster.wait_ready(nodes=survivors, timeout=30)
    assert all(after["leaders"][str(p)] != victim for p in range(partitions))
    await verify(cluster, load)
    # the victim comes back and catches up: its replicas converge with the others
    cluster.cluster.start_node(victim)
    await cluster.wait_ready(timeout=60)
    await assert_replicas_converge(cluster, victim, load)


async def assert_replicas_converge(handle, node_id: str, load: WriteLoad) -> None:
    node = handle.cluster.pmap.node(node_id)
    deadline = time.monotonic() + 30
    missing: list[str] = []
    async with Client([node.http_url], direct=False, timeout=10.0) as one:
        while time.monotonic() < deadline:
            missing = []
            for key, value in load.acked.items():
                p = hashing.partition_of(key, handle.cluster.pmap.partitions)
                if node_id not in handle.cluster.pmap.replicas[p]:
                    continue
                entry = await one.get(key, consistency="eventual")
                if entry is None or entry.value != value:
                    missing.append(key)
            if not missing:
                return
            await asyncio.sleep(0.5)
    raise AssertionError(
        f"{node_id} did not catch up: {len(missing)} keys missing, e.g. {missing[:5]}"
    )


async def _kill_all_and_restart(handle) -> None:
    async with handle.client(timeout=15.0) as c:
        load = WriteLoad(c, prefix="all9")
        runner = asyncio.create_task(load.run(max_ops=2000))
        await asyncio.sleep(3.0)
        for node_id in handle.cluster.node_ids:  # as close to simultaneous as processes allow
            handle.cluster.kill_node(node_id)
        load.stop()
        await asyncio.wait_for(runner, 60)
    assert len(load.acked) > 50
    handle.cluster.start_all()
    await handle.wait_ready(timeout=90)
    await verify(handle, load)


async def test_kill_all_nodes_and_restart_keeps_every_acknowledged_write(cluster) -> None:
    await _kill_all_and_restart(cluster)


async def test_kill_all_nodes_with_fsync_durability(make_cluster) -> None:
    handle = make_cluster(env={"KVNODE_DURABILITY": "fsync"})
    await handle.wait_ready(timeout=60)
    await _kill_all_and_restart(handle)


async def test_restarted_node_catches_up_on_missed_writes(cluster) -> None:
    victim = cluster.cluster.node_ids[2]
    cluster.cluster.stop_node(victim)
    survivors = cluster.cluster.node_ids[:2]
    await cluster.wait_ready(nodes=survivors, timeout=30)
    # No fault while writing, so each attempt may take long (a loaded machine): with the
    # default 2 s cap a slow write ended UnknownOutcome, one in 400 in a busy-machine run.
    async with cluster.client(timeout=30.0, attempt_timeout=15.0) as c:
        load = WriteLoad(c, prefix="missed", workers=4)
        await load.run(max_ops=100)
    assert not load.failed, load.failed[:10]
    assert len(load.acked) + len(load.unknown) == 400
    # Only a write in flight while the stopped node's leaderships moved (its hand-off, then
    # housekeeping's hand-back to the preferred replica) may be undecided; verified below.
    assert len(load.unknown) <= 4, sorted(load.unknown)[:10]
    cluster.cluster.start_node(victim)
    await cluster.wait_ready(timeout=60)
    await assert_replicas_converge(cluster, victim, load)
    await verify(cluster, load)
