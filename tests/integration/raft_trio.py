"""Three in-process nodes' GroupManagers (three shared tickers) over real sockets and real LevelDB.

Each trio gets its own loopback address (claimed like every test cluster's, see
``tests.support.addresses``) with fixed ports below the ephemeral range, so parallel suites and
sockets in TIME-WAIT elsewhere cannot take them. Node i hosts partition p's replica on port
20000 + 100·i + p.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kvnode.core.ops import Put
from kvnode.raft import commands
from kvnode.raft.groups import GroupManager, RaftTuning
from kvnode.raft.processor import ApplyResult, CommandProcessor
from kvnode.raft.replica import PartitionReplica
from kvnode.storage.engine import PartitionStore
from kvnode.storage.leveldb import LevelDBStore

from tests.support.addresses import Claim, claim_ports

T = TypeVar("T")
PORT_BASE = 20000
FAST = RaftTuning(
    heartbeat_s=0.1,
    election_min_s=0.8,
    election_max_s=1.6,
    leader_fallback_s=1.5,
    compaction_min_entries=300,
    compaction_min_time_s=3600,
)
_held: list[Claim] = []  # claims kept for the life of the process (see free_loopback)


def free_loopback(ports: list[int]) -> str:
    """A loopback address of this process's own (``tests.support.addresses``: locked against
    parallel processes, every port in ``ports`` bindable now). The claim is held until the
    process exits: trios are few per session, and a released address could be reclaimed while
    a stopped trio's sockets still linger."""
    claim = claim_ports(ports)
    _held.append(claim)
    return claim.host


async def until(
    fn: Callable[[], Awaitable[T] | T], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout`` with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")


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

    def __init__(self, root: str, partitions: int, tuning: RaftTuning = FAST) -> None:
        self.root = root
        self.partitions = partitions
        self.host = free_loopback(
            [PORT_BASE + 100 * i + p for i in range(3) for p in range(partitions)]
        )
        self.tuning = dataclasses.replace(tuning, bind_host=self.host)
        self.gms: list[GroupManager | None] = [None, None, None]
        self.procs: list[CountingProcessor] = [CountingProcessor() for _ in range(3)]

    def addr(self, i: int, p: int) -> str:
        return f"{self.host}:{PORT_BASE + 100 * i + p}"

    async def start(self, i: int) -> None:
        gm = GroupManager(
            data_dir=os.path.join(self.root, f"n{i}"),
            tuning=self.tuning,
            open_store=lambda path: LevelDBStore.open(path),
            processor=self.procs[i],
        )
        gm.start()
        self.gms[i] = gm
        for p in range(self.partitions):
            peers = [self.addr(j, p) for j in range(3)]
            await asyncio.to_thread(gm.open_replica, p, self_addr=self.addr(i, p), peers=peers)

    async def stop(self, i: int) -> None:
        gm = self.gms[i]
        if gm is not None:
            self.gms[i] = None
            await asyncio.to_thread(gm.stop)

    async def stop_all(self) -> None:
        for i in range(3):
            await self.stop(i)

    def gm(self, i: int) -> GroupManager:
        gm = self.gms[i]
        assert gm is not None, f"node {i} is stopped"
        return gm

    def replica(self, i: int, p: int) -> PartitionReplica:
        return self.gm(i).replica(p)

    def on(self, i: int, fn: Callable[[], T]) -> T:
        """Run ``fn`` in node i's ticker thread (where PySyncObj state may be touched)."""
        return self.gm(i).ticker.call(fn)

    def term(self, i: int, p: int) -> int:
        replica = self.replica(i, p)
        return int(self.on(i, lambda: replica.raftCurrentTerm))

    def leaders(self, p: int) -> list[int]:
        return [i for i, gm in enumerate(self.gms) if gm is not None and gm.is_leader(p)]

    async def leader(self, p: int, timeout: float = 20.0) -> int:
        found = await until(
            lambda: self.leaders(p), timeout=timeout, what=f"a leader for partition {p}"
        )
        return found[0]

    async def put_many(self, p: int, n: int, *, prefix: str, value: str = "v" * 50) -> None:
        sem = asyncio.Semaphore(64)

        async def one(k: int) -> None:
            async with sem:
                gm = self.gm(await self.leader(p))
                cmd = commands.WriteCmd(ops=(Put(key=f"{prefix}{k}", value=value),), now_ms=0)
                await gm.propose(p, cmd, timeout=10)

        await asyncio.gather(*(one(k) for k in range(n)))

    async def converged(self, p: int, nodes: list[int], timeout: float = 30.0) -> str:
        def same() -> str | None:
            digests = {self.gm(i).store(p).digest() for i in nodes}
            return digests.pop() if len(digests) == 1 else None

        return await until(same, timeout=timeout, what=f"partition {p} equal on {nodes}")

    async def cut(self, a: int, b: int, p: int) -> None:
        """Cut the Raft link between nodes a and b for partition p (both directions)."""
        ra, rb = self.replica(a, p), self.replica(b, p)
        await asyncio.to_thread(self.on, a, lambda: ra.cut_link(self.addr(b, p)))
        await asyncio.to_thread(self.on, b, lambda: rb.cut_link(self.addr(a, p)))

    async def heal(self, a: int, b: int, p: int) -> None:
        ra, rb = self.replica(a, p), self.replica(b, p)
        await asyncio.to_thread(self.on, a, lambda: ra.heal_link(self.addr(b, p)))
        await asyncio.to_thread(self.on, b, lambda: rb.heal_link(self.addr(a, p)))
