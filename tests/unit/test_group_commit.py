"""Group commit on the event loop (``raft.groupcommit``): when writes are coalesced, how a batch
is bounded, and that every request gets exactly its own result or error.

The Raft layer below is a fake that keeps a log and applies each entry with the real processor
on a real (memory) store, through the real byte encoding, and can hold an entry in flight.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest
from kvnode.core import errors
from kvnode.core.ops import Condition, Delete, Put, WriteResult
from kvnode.raft import commands
from kvnode.raft.commands import GroupCmd, WriteCmd
from kvnode.raft.groupcommit import GroupCommitLimits, GroupCommitter, _Pending, take_batch
from kvnode.raft.processor import ApplyResult, CommandProcessor
from kvnode.storage.memory import MemoryStore


def w(*ops: Put | Delete) -> WriteCmd:
    return WriteCmd(ops=tuple(ops), now_ms=1_000)


class FakeRaft:
    """A log that applies each entry when ``release`` lets it (all at once when open)."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.log: list[commands.Command] = []
        self.open = asyncio.Event()
        self.open.set()
        self.fail: Exception | None = None

    async def propose(self, partition: int, cmd: commands.Command, timeout: float) -> Any:
        payload = commands.encode(cmd)
        self.log.append(cmd)
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        return CommandProcessor().apply(self.store, commands.decode(payload), len(self.log))


async def _until(cond: Any, what: str) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} did not happen")


async def test_an_idle_partition_proposes_at_once_in_the_old_format() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    result = await asyncio.wait_for(gc.submit(0, w(Put("a", "1")), timeout=5), 1)
    assert result == ApplyResult(index=1, results=(WriteResult("a", 1, False),))
    assert raft.log == [w(Put("a", "1"))]  # a WriteCmd, not a group of one


async def test_writes_arriving_during_an_entry_share_the_next_one_each_with_its_result() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    raft.open.clear()
    first = asyncio.ensure_future(gc.submit(0, w(Put("a", "1")), timeout=5))
    await _until(lambda: len(raft.log) == 1, "first proposal")
    later = [
        asyncio.ensure_future(gc.submit(0, w(Put("b", "1")), timeout=5)),
        asyncio.ensure_future(
            gc.submit(0, w(Put("c", "1", cond=Condition(if_version=7))), timeout=5)
        ),
        asyncio.ensure_future(gc.submit(0, w(Delete("d"), Put("e", "2")), timeout=5)),
    ]
    await _until(lambda: len(gc._parts[0].queue) == 3, "queueing")
    assert len(raft.log) == 1  # nothing else proposed while the entry is in flight
    raft.open.set()
    assert (await first).results == (WriteResult("a", 1, False),)
    ok_b, failed_c, ok_de = await asyncio.gather(*later, return_exceptions=True)
    assert len(raft.log) == 2
    assert isinstance(raft.log[1], GroupCmd)
    assert ok_b == ApplyResult(index=2, results=(WriteResult("b", 2, False),))
    assert isinstance(failed_c, ApplyResult)
    assert failed_c.failure is not None
    assert failed_c.failure.key == "c"
    assert failed_c.failure.current_version == 0
    assert ok_de == ApplyResult(
        index=2, results=(WriteResult("d", 0, False), WriteResult("e", 2, False))
    )
    assert raft.store.get("c") is None
    assert raft.store.get("e") is not None
    assert gc.stats().entries == 2
    assert gc.stats().requests == 4
    assert gc.stats().largest == 3
    assert not gc._parts  # idle partitions leave no state behind


async def test_the_same_key_never_shares_an_entry_and_keeps_its_arrival_order() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    raft.open.clear()
    head = asyncio.ensure_future(gc.submit(0, w(Put("x", "0")), timeout=5))
    await _until(lambda: len(raft.log) == 1, "first proposal")
    # Two CAS increments of x from version 1, then an unrelated write.
    inc1 = asyncio.ensure_future(
        gc.submit(0, w(Put("x", "1", cond=Condition(if_version=1))), timeout=5)
    )
    inc2 = asyncio.ensure_future(
        gc.submit(0, w(Put("x", "2", cond=Condition(if_version=1))), timeout=5)
    )
    other = asyncio.ensure_future(gc.submit(0, w(Put("y", "1")), timeout=5))
    await _until(lambda: len(gc._parts[0].queue) == 3, "queueing")
    raft.open.set()
    await head
    r1, r2, ro = await asyncio.gather(inc1, inc2, other)
    assert r1.ok
    assert r1.results[0].version == 2
    assert r2.failure is not None
    assert r2.failure.current_version == 2
    assert ro.ok
    assert ro.index == 2
    assert [type(c).__name__ for c in raft.log] == ["WriteCmd", "GroupCmd", "WriteCmd"]


def _pending(key: str, size: int = 10) -> _Pending:
    loop = asyncio.get_running_loop()
    cmd = w(Put(key, "v"))
    return _Pending(cmd, commands.write_keys(cmd), size, 0.0, loop.create_future())


async def test_a_batch_is_bounded_by_count_and_bytes() -> None:
    q = collections.deque(_pending(f"k{i}") for i in range(10))
    assert len(take_batch(q, GroupCommitLimits(max_requests=4))) == 4
    assert len(q) == 6
    q = collections.deque([_pending("a", 60), _pending("b", 50), _pending("c", 40)])
    batch = take_batch(q, GroupCommitLimits(max_bytes=100))
    assert [p.cmd.ops[0].key for p in batch] == ["a", "c"]
    assert len(q) == 1
    # A request bigger than the bound alone still goes, alone.
    q = collections.deque([_pending("huge", 500), _pending("b", 10)])
    assert [p.cmd.ops[0].key for p in take_batch(q, GroupCommitLimits(max_bytes=100))] == ["huge"]


def test_default_bounds_stay_below_the_append_entries_message_size() -> None:
    from kvnode.raft.tuning import RaftTuning, syncobj_conf

    conf = syncobj_conf(RaftTuning(), partition_dir="/nonexistent", self_addr="h:1")
    limits = GroupCommitLimits()
    assert limits.max_bytes * 2 <= conf.appendEntriesBatchSizeBytes
    big = w(Put("k" * 1024, "v" * (256 * 1024)))  # the largest single put the API accepts
    assert len(commands.encode(big)) <= commands.approx_size(big)


async def test_a_failed_proposal_fails_each_request_with_the_same_error() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    raft.open.clear()
    first = asyncio.ensure_future(gc.submit(0, w(Put("a", "1")), timeout=5))
    await _until(lambda: len(raft.log) == 1, "first proposal")
    rest = [asyncio.ensure_future(gc.submit(0, w(Put(k, "1")), timeout=5)) for k in "bc"]
    await _until(lambda: len(gc._parts[0].queue) == 2, "queueing")
    raft.fail = errors.NotLeader("partition 0: not the leader", partition=0, leader=None)
    raft.open.set()
    for fut in [first, *rest]:
        with pytest.raises(errors.NotLeader):
            await fut


async def test_a_deadline_while_queued_withdraws_the_write_and_says_it_was_not_applied() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    raft.open.clear()
    first = asyncio.ensure_future(gc.submit(0, w(Put("a", "1")), timeout=0.2))
    await _until(lambda: len(raft.log) == 1, "first proposal")
    queued = asyncio.ensure_future(gc.submit(0, w(Put("b", "1")), timeout=0.05))
    with pytest.raises(errors.Unavailable, match="not applied"):
        await queued
    with pytest.raises(errors.UnknownOutcome):  # proposed, never confirmed
        await first
    raft.open.set()
    await _until(lambda: not gc._parts, "the entry in flight to finish")
    assert len(raft.log) == 1
    assert raft.store.get("b") is None


async def test_partitions_do_not_wait_for_each_other() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose)
    raft.open.clear()
    both = [asyncio.ensure_future(gc.submit(p, w(Put("a", "1")), timeout=5)) for p in (0, 1)]
    await _until(lambda: len(raft.log) == 2, "one proposal per partition at once")
    raft.open.set()
    assert all(isinstance(r, ApplyResult) for r in await asyncio.gather(*both))


async def test_group_commit_off_puts_every_write_in_its_own_entry() -> None:
    raft = FakeRaft()
    gc = GroupCommitter(raft.propose, limits=GroupCommitLimits(max_requests=1))
    raft.open.clear()
    futs = [asyncio.ensure_future(gc.submit(0, w(Put(k, "1")), timeout=5)) for k in "abcd"]
    await _until(lambda: len(raft.log) == 1, "first proposal")
    raft.open.set()
    results = await asyncio.gather(*futs)
    assert [r.index for r in results] == [1, 2, 3, 4]
    assert all(isinstance(c, WriteCmd) for c in raft.log)


async def test_no_group_while_a_replica_may_not_decode_one() -> None:
    raft = FakeRaft()
    allowed = {0: False}
    gc = GroupCommitter(raft.propose, allowed=lambda p: allowed[p])
    raft.open.clear()
    futs = [asyncio.ensure_future(gc.submit(0, w(Put(k, "1")), timeout=5)) for k in "abcd"]
    await _until(lambda: len(raft.log) == 1, "first proposal")
    raft.open.set()
    await asyncio.gather(*futs)
    assert all(isinstance(c, WriteCmd) for c in raft.log)
    assert len(raft.log) == 4
    allowed[0] = True
    raft.open.clear()
    futs = [asyncio.ensure_future(gc.submit(0, w(Put(k, "2")), timeout=5)) for k in "abcd"]
    await _until(lambda: len(raft.log) == 5, "first proposal")
    raft.open.set()
    await asyncio.gather(*futs)
    assert isinstance(raft.log[-1], GroupCmd)
    assert len(raft.log) == 6
