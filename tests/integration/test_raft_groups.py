"""Raft groups in-process: three GroupManagers (three shared tickers) over real sockets and real
LevelDB stores. Covers what is awkward to observe through HTTP: snapshots and journal compaction,
restart without replaying history, snapshot catch-up of a far-behind follower, and read-barrier
coalescing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator

import pytest
from kvnode.core.ops import Put
from kvnode.raft import commands
from kvnode.raft.groups import GroupManager, RaftTuning
from kvnode.raft.processor import ApplyResult, CommandProcessor
from kvnode.storage.engine import PartitionStore
from kvnode.storage.leveldb import LevelDBStore

from tests.support.addresses import claim_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TUNING = RaftTuning(
    heartbeat_s=0.1,
    election_min_s=0.8,
    election_max_s=1.6,
    leader_fallback_s=1.5,
    compaction_min_entries=300,
    compaction_min_time_s=3600,
)


class CountingProcessor(CommandProcessor):
    """Counts commands actually applied (not skipped as replays)."""

    def __init__(self) -> None:
        super().__init__()
        self.applied = 0

    def apply(self, store: PartitionStore, cmd: commands.Command, index: int) -> ApplyResult:
        result = super().apply(store, cmd, index)
        if not result.skipped:
            self.applied += 1
        return result


class Trio:
    """Three nodes' group managers hosting partitions 0..P-1."""

    def __init__(self, root: str, partitions: int) -> None:
        self.root = root
        self.partitions = partitions
        self.claim = claim_address(nodes=3, partitions=partitions)
        self.base = self.claim.base_port + 10000
        self.gms: list[GroupManager | None] = [None, None, None]
        self.procs: list[CountingProcessor] = [CountingProcessor() for _ in range(3)]

    def addr(self, i: int, p: int) -> str:
        return f"{self.claim.host}:{self.base + 1000 * i + p}"

    async def start(self, i: int) -> None:
        gm = GroupManager(
            data_dir=os.path.join(self.root, f"n{i}"),
            tuning=dataclasses.replace(TUNING, bind_host=self.claim.host),
            open_store=lambda path: LevelDBStore.open(path),
            processor=self.procs[i],
        )
        gm.start()
        for p in range(self.partitions):
            peers = [self.addr(j, p) for j in range(3)]
            await asyncio.to_thread(gm.open_replica, p, self_addr=self.addr(i, p), peers=peers)
        self.gms[i] = gm

    async def stop(self, i: int) -> None:
        gm = self.gms[i]
        if gm is not None:
            await asyncio.to_thread(gm.stop)
            self.gms[i] = None

    def gm(self, i: int) -> GroupManager:
        gm = self.gms[i]
        assert gm is not None
        return gm

    async def leader(self, p: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, gm in enumerate(self.gms):
                if gm is not None and gm.is_leader(p):
                    return i
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no leader for partition {p} within {timeout}s")

    async def put_many(self, p: int, n: int, *, prefix: str) -> None:
        sem = asyncio.Semaphore(64)

        async def one(k: int) -> None:
            async with sem:
                gm = self.gm(await self.leader(p))
                cmd = commands.WriteCmd(ops=(Put(key=f"{prefix}{k}", value="v" * 50),), now_ms=0)
                await gm.propose(p, cmd, timeout=10)

        await asyncio.gather(*(one(k) for k in range(n)))

    async def converged(self, p: int, nodes: list[int], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        digests: list[str] = []
        while time.monotonic() < deadline:
            digests = [self.gm(i).store(p).digest() for i in nodes]
            if len(set(digests)) == 1:
                return digests[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"partition {p} digests differ after {timeout}s: {digests}")


@pytest.fixture
async def trio(tmp_path) -> AsyncIterator[Trio]:
    t = Trio(str(tmp_path), partitions=2)
    for i in range(3):
        await t.start(i)
    yield t
    for i in range(3):
        await t.stop(i)
    t.claim.release()


async def test_snapshot_compacts_journal_and_restart_does_not_replay(trio: Trio) -> None:
    await trio.put_many(0, 900, prefix="a")
    await trio.converged(0, [0, 1, 2])
    snap = os.path.join(trio.gm(1).partition_dir(0), "raft.snapshot")
    deadline = time.monotonic() + 30
    while not os.path.exists(snap):  # noqa: ASYNC240 (test polling a local file)
        assert time.monotonic() < deadline, "no snapshot after 900 entries (compaction at 300)"
        await trio.put_many(0, 50, prefix=f"more{time.monotonic()}")
    status = trio.gm(1).status(0)
    assert status is not None
    assert status.log_len < 900, f"journal not compacted: {status.log_len} entries"
    keys_before = trio.gm(1).store(0).stats().keys
    for i in range(3):
        await trio.stop(i)
    trio.procs = [CountingProcessor() for _ in range(3)]
    for i in range(3):
        await trio.start(i)
    await trio.leader(0)
    await trio.converged(0, [0, 1, 2])
    assert trio.gm(1).store(0).stats().keys == keys_before
    # nothing already in LevelDB was applied again: at most the few entries written after the
    # last meta flush, never the history
    assert max(p.applied for p in trio.procs) < 50, [p.applied for p in trio.procs]


async def test_far_behind_follower_catches_up_from_a_snapshot(trio: Trio) -> None:
    await trio.put_many(1, 50, prefix="early")
    await trio.stop(2)
    await trio.put_many(1, 1500, prefix="late")  # several compactions happen meanwhile
    leader = trio.gm(await trio.leader(1))
    status = leader.status(1)
    assert status is not None
    assert status.log_len < 1500, "the leader's journal should have been compacted"
    await trio.start(2)
    digest = await trio.converged(1, [0, 1, 2], timeout=60)
    assert trio.gm(2).store(1).stats().keys == 1550
    assert digest == leader.store(1).digest()


async def test_read_barriers_are_coalesced(trio: Trio) -> None:
    leader = trio.gm(await trio.leader(0))
    await trio.put_many(0, 10, prefix="b")
    before = leader.store(0).applied_index()
    await asyncio.gather(*(leader.read_barrier(0, timeout=10) for _ in range(500)))
    used = leader.store(0).applied_index() - before
    assert 1 <= used <= 50, f"500 concurrent strong reads used {used} barrier entries"


async def test_strong_read_barrier_fails_on_an_isolated_leader(trio: Trio) -> None:
    p = 0
    li = await trio.leader(p)
    others = [i for i in range(3) if i != li]
    for i in others:
        await trio.stop(i)
    with pytest.raises(Exception) as exc:  # noqa: PT011 - Unavailable or UnknownOutcome
        await trio.gm(li).read_barrier(p, timeout=3)
    assert getattr(exc.value, "code", None) in ("unavailable", "not_leader", "unknown_outcome")
