"""Strong reads by ReadIndex on real Raft trios (real sockets, real LevelDB): no log entry per
read, and linearizable while the leader is paused past the election timeout or cut off from its
followers — checked on the recorded history by ``tests.support.linearizability``."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.integration.raft_trio import FAST, Trio
from tests.integration.readload import under_fault

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
P = 0


# A deposed leader that goes on believing it leads for longer than the election takes is the
# dangerous case for reads: make that window wide (it steps down after hearing from no majority
# for leader_fallback_s).
TUNING = dataclasses.replace(FAST, leader_fallback_s=8.0)


async def started(root: str, read_mode: str) -> Trio:
    t = Trio(root, partitions=1, tuning=dataclasses.replace(TUNING, read_mode=read_mode))
    for i in range(3):
        await t.start(i)
    return t


@pytest.fixture(params=["readindex", "barrier"])
async def trio(tmp_path, request) -> AsyncIterator[Trio]:
    t = await started(str(tmp_path), request.param)
    try:
        yield t
    finally:
        await t.stop_all()


async def test_readindex_reads_append_no_log_entry_and_share_rounds(tmp_path) -> None:
    trio = await started(str(tmp_path), "readindex")
    try:
        await _readindex_reads(trio)
    finally:
        await trio.stop_all()


async def _readindex_reads(trio: Trio) -> None:
    li = await trio.leader(P)
    leader = trio.gm(li)
    await trio.put_many(P, 10, prefix="b")
    replica = leader.replica(P)
    before, rounds = leader.store(P).applied_index(), replica.read_index.rounds_sent
    await asyncio.gather(*(leader.read_barrier(P, timeout=10) for _ in range(500)))
    assert leader.store(P).applied_index() == before, "a ReadIndex read appended a log entry"
    used = replica.read_index.rounds_sent - rounds
    assert 1 <= used <= 50, f"500 concurrent strong reads used {used} probe rounds"
    assert replica.read_index.served >= 500


async def test_barrier_mode_reads_are_coalesced(tmp_path) -> None:
    trio = await started(str(tmp_path), "barrier")
    try:
        leader = trio.gm(await trio.leader(P))
        await trio.put_many(P, 10, prefix="b")
        before = leader.store(P).applied_index()
        await asyncio.gather(*(leader.read_barrier(P, timeout=10) for _ in range(500)))
        used = leader.store(P).applied_index() - before
        assert 1 <= used <= 50, f"500 concurrent strong reads used {used} barrier entries"
        assert leader.replica(P).read_index.served == 0
    finally:
        await trio.stop_all()


async def test_linearizable_while_the_leader_is_paused_past_the_election_timeout(
    trio: Trio,
) -> None:
    async def pause(li: int) -> Callable[[], Awaitable[None]]:
        # The in-process analogue of SIGSTOP for the Raft layer: the leader's ticker thread (every
        # PySyncObj action of that node) stops; requests to it queue up, as in a stopped process.
        release = threading.Event()
        trio.gm(li).ticker.post(lambda: release.wait(30))

        async def resume() -> None:
            release.set()

        return resume

    load = await under_fault(trio, pause, seed=1)
    assert load.served_by, "no strong read was served"


async def test_linearizable_while_the_leader_is_cut_off_from_its_followers(trio: Trio) -> None:
    async def isolate(li: int) -> Callable[[], Awaitable[None]]:
        others = [i for i in range(3) if i != li]
        for j in others:
            await trio.cut(li, j, P)

        async def heal() -> None:
            for j in others:
                await trio.heal(li, j, P)

        return heal

    await under_fault(trio, isolate, seed=2)
