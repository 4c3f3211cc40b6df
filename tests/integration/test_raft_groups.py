"""Raft groups in-process: three GroupManagers (three shared tickers) over real sockets and real
LevelDB stores. Covers what is awkward to observe through HTTP: snapshots and journal compaction,
restart without replaying history, snapshot catch-up of a far-behind follower, and a strong read
failing on an isolated leader (read coalescing: test_read_index.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import pytest

from tests.integration.raft_trio import CountingProcessor, Trio

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
async def trio(tmp_path) -> AsyncIterator[Trio]:
    t = Trio(str(tmp_path), partitions=2)
    try:
        for i in range(3):
            await t.start(i)
        yield t
    finally:
        await t.stop_all()


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
    # the last batch is acknowledged by the leader; node 1 may still be applying it
    await trio.converged(0, [0, 1, 2])
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


async def test_strong_read_barrier_fails_on_an_isolated_leader(trio: Trio) -> None:
    p = 0
    li = await trio.leader(p)
    others = [i for i in range(3) if i != li]
    for i in others:
        await trio.stop(i)
    with pytest.raises(Exception) as exc:  # noqa: PT011 - Unavailable or UnknownOutcome
        await trio.gm(li).read_barrier(p, timeout=3)
    assert getattr(exc.value, "code", None) in ("unavailable", "not_leader", "unknown_outcome")
