"""The node WAL of ``durability=fsync`` wired into real groups (``kvnode.raft.wal``, the
ticker's hold, the apply hook): real Raft groups over real sockets and real LevelDB, in-process.
Host crashes are simulated in ``test_durability``; here: what a running node does."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from kvnode.core.ops import Put
from kvnode.raft import commands, wal
from kvnode.raft.groups import GroupManager
from kvnode.storage.leveldb import LevelDBStore

from tests.integration.raft_trio import FAST, PORT_BASE, Trio, free_loopback, until

FSYNC = dataclasses.replace(FAST, fsync=True)


def watch_applies(gm: GroupManager) -> list[bool]:
    """Whether the WAL held unsynced records at each apply on ``gm`` (the processor runs in
    the ticker thread, inside PySyncObj's apply)."""
    seen: list[bool] = []
    processor = gm._processor
    original = processor.apply

    def apply(store: Any, cmd: Any, index: int) -> Any:
        assert gm.wal is not None
        seen.append(gm.wal.dirty)
        return original(store, cmd, index)

    processor.apply = apply  # type: ignore[method-assign]
    return seen


def segment_ops(path: str) -> list[int]:
    with open(path, "rb") as f:
        return [op for op, _name, _body in wal.records(f.read())]


async def test_a_lone_voter_applies_only_what_its_wal_synced(tmp_path) -> None:
    """A one-voter group needs no follower's answer to commit: nothing may be applied (and
    answered) while the WAL still holds unsynced records (the apply hook's rule; PySyncObj's
    own tick order also gives it today)."""
    host = free_loopback([PORT_BASE])
    gm = GroupManager(
        data_dir=str(tmp_path / "solo"),
        tuning=dataclasses.replace(FSYNC, bind_host=host),
        open_store=LevelDBStore.open,
    )
    dirty_at_apply = watch_applies(gm)
    gm.start()
    try:
        addr = f"{host}:{PORT_BASE}"
        await asyncio.to_thread(gm.open_replica, 0, self_addr=addr, peers=[addr])
        await until(lambda: gm.is_leader(0), timeout=10, what="single replica leads")
        for i in range(20):
            cmd = commands.WriteCmd(ops=(Put(key=f"k{i}", value="v"),), now_ms=0)
            await gm.propose(0, cmd, timeout=5)
        assert gm.wal is not None
        assert gm.wal.syncs > 0
        assert len(dirty_at_apply) >= 20
        assert not any(dirty_at_apply), "an entry was applied before its WAL sync"
    finally:
        await asyncio.to_thread(gm.stop)


async def test_a_trio_shares_wal_syncs_holds_messages_and_restarts_from_its_journals(
    tmp_path,
) -> None:
    trio = Trio(str(tmp_path), partitions=4, tuning=FSYNC)
    try:
        for i in range(3):
            await trio.start(i)
        held = [0, 0, 0]
        for i in range(3):
            ticker = trio.gm(i).ticker
            original = ticker.hold

            def counting(conn: Any, message: Any, i: int = i, original: Any = original) -> bool:
                kept = original(conn, message)
                held[i] += kept
                return kept

            ticker.hold = counting  # type: ignore[method-assign]
        dirty_at_apply = [watch_applies(trio.gm(i)) for i in range(3)]
        for p in range(4):
            await trio.put_many(p, 60, prefix=f"w{p}-")
        wals = [trio.gm(i).wal for i in range(3)]
        assert all(w is not None for w in wals)
        records = sum(w.records for w in wals if w is not None)
        syncs = sum(w.syncs for w in wals if w is not None)
        # 240 writes, 3 replicas each, in at most 240 entries: several changes share a sync.
        assert syncs < records, (syncs, records)
        assert all(held), f"Raft messages held for a WAL sync per node: {held}"
        assert not any(any(d) for d in dirty_at_apply), "applied before its WAL sync"
        digests = [await trio.converged(p, [0, 1, 2]) for p in range(4)]

        await trio.stop_all()  # clean stop: every journal closed (synced), CLOSE recorded
        for i in range(3):
            ((_seq, segment),) = wal.segments(os.path.join(trio.root, f"n{i}", wal.DIR))
            ops = segment_ops(segment)
            assert ops.count(wal.CLOSE) == 4, ops  # one per journal, the last records
            assert ops[-4:] == [wal.CLOSE] * 4, ops[-8:]
        for i in range(3):
            await trio.start(i)  # recovery consumes the old segment and starts a new one
        assert [await trio.converged(p, [0, 1, 2]) for p in range(4)] == digests
        await trio.put_many(0, 10, prefix="after-restart-")  # syncs what opening recorded
        await trio.converged(0, [0, 1, 2])
        for i in range(3):
            ((_seq, segment),) = wal.segments(os.path.join(trio.root, f"n{i}", wal.DIR))
            ops = segment_ops(segment)
            assert wal.CLOSE not in ops, ops  # a new segment: opened journals' bases onwards
            assert ops[0] == wal.BASE, ops[:8]
            assert ops.count(wal.BASE) >= 4, ops  # every journal's base as it opened
    finally:
        await trio.stop_all()
