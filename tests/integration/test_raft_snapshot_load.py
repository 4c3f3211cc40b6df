"""A node that leads a 1 M-key partition keeps every leadership while that partition snapshots.

The snapshot dump used to run in the shared ticker thread and stop the heartbeats of every group
of the node for ~2 s at 1 M keys, longer than the election timeout. Now only the LevelDB snapshot
and the Raft position are taken in the ticker; a worker writes the dump (``kvnode.raft.dump``).

The 1 M keys are written straight into each replica's LevelDB before the groups open (the same
records on every node, so the replicas agree); Raft-replicating them would take minutes of CPU
and is not what is under test. The snapshot then runs through PySyncObj's real compaction path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from kvnode.core.model import Record
from kvnode.raft import registry
from kvnode.storage import engine, snapshot
from kvnode.storage.leveldb import LevelDBStore

from tests.integration.raft_trio import FAST, Trio, until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
log = logging.getLogger(__name__)

KEYS = 1_000_000
PARTITIONS = 4
BIG = 0
NODE = 0  # leads every partition during the test


def _items() -> Iterator[tuple[bytes, bytes]]:
    value = engine.encode_record(Record(value="v" * 16, version=1))
    for n in range(KEYS):
        yield engine.DATA_PREFIX + f"k{n:07d}".encode(), value


class StallProbe:
    """Measures how long the ticker thread takes to run a no-op handed to it, continuously."""

    def __init__(self, trio: Trio, node: int) -> None:
        self._ticker = trio.gm(node).ticker
        self._stop = threading.Event()
        self.worst_s = 0.0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="stall-probe", daemon=True)

    def __enter__(self) -> StallProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self._ticker.call(lambda: None, timeout=60)
            self.worst_s = max(self.worst_s, time.monotonic() - t0)
            self.samples += 1
            self._stop.wait(0.01)


@pytest.fixture
async def trio(tmp_path) -> AsyncIterator[Trio]:
    t = Trio(
        str(tmp_path),
        partitions=PARTITIONS,
        tuning=dataclasses.replace(FAST, compaction_min_entries=10_000_000),
    )
    started = time.monotonic()
    for i in range(3):
        pdir = registry.partition_dir(os.path.join(t.root, f"n{i}"), BIG)
        os.makedirs(pdir)
        store = LevelDBStore.open(os.path.join(pdir, "data"))
        try:
            await asyncio.to_thread(store.load_dump, _items())
        finally:
            store.close()
    log.info("preloaded %d keys on 3 replicas in %.1fs", KEYS, time.monotonic() - started)
    try:
        for i in range(3):
            await t.start(i)
        yield t
    finally:
        await t.stop_all()


async def _lead_everything(trio: Trio, node: int) -> None:
    for p in range(PARTITIONS):
        for _ in range(10):
            current = await trio.leader(p)
            if current == node:
                break
            trio.gm(current).transfer_leadership(p, trio.addr(node, p))
            try:
                await until(lambda p=p: trio.leaders(p) == [node], timeout=5, what="transfer")
            except AssertionError:
                continue
        assert trio.leaders(p) == [node], f"node {node} could not take partition {p}"


async def test_leader_keeps_all_leaderships_while_a_1m_key_partition_snapshots(
    trio: Trio,
) -> None:
    await _lead_everything(trio, NODE)
    for p in range(PARTITIONS):
        await trio.put_many(p, 5, prefix="w")
    assert trio.gm(NODE).store(BIG).stats().keys == KEYS + 5
    terms = {(i, p): trio.term(i, p) for i in range(3) for p in range(PARTITIONS)}
    dump = os.path.join(trio.gm(NODE).partition_dir(BIG), registry.SNAPSHOT_FILE)
    assert not os.path.exists(dump)  # noqa: ASYNC240 (local file, test only)
    replica = trio.replica(NODE, BIG)

    with StallProbe(trio, NODE) as probe:
        started = time.monotonic()
        await asyncio.to_thread(trio.gm(NODE).force_compaction, BIG)
        # writes keep flowing on the node's other groups while the dump is written
        while replica.dumps.last_duration_s is None:
            assert time.monotonic() - started < 300, "snapshot not written within 300s"
            await trio.put_many(1 + int(time.monotonic()) % (PARTITIONS - 1), 5, prefix="d")
        await until(
            lambda: os.path.exists(dump) and (s := trio.gm(NODE).status(BIG)) and s.log_len < 10,
            timeout=30,
            what="snapshot installed and journal compacted",
        )
    log.info(
        "1M-key dump %.2fs; worst ticker stall %.3fs over %d probes",
        replica.dumps.last_duration_s,
        probe.worst_s,
        probe.samples,
    )
    assert [p for p in range(PARTITIONS) if trio.leaders(p) != [NODE]] == []
    changed = {k: (v, trio.term(*k)) for k, v in terms.items() if trio.term(*k) != v}
    assert changed == {}, f"terms changed while snapshotting: {changed}"
    # the ticker stayed far inside the election timeout
    assert probe.worst_s < FAST.election_min_s / 2, probe.worst_s
    # the dump is complete and verifies (count and SHA-256 trailer)
    records = 0

    def count(items: Iterator[tuple[bytes, bytes]]) -> None:
        nonlocal records
        records = sum(1 for k, _ in items if k.startswith(engine.DATA_PREFIX))

    await asyncio.to_thread(snapshot.load_file, dump, count)
    assert records == KEYS + 5
