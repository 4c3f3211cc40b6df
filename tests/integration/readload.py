"""Concurrent clients of a Raft trio doing writes, CAS and strong reads on a few keys, recorded as
a history for the linearizability checker (``tests.support.linearizability``).

A client sends each operation to one node: a *sticky* client always to the node it was given
(the one a test pauses or isolates, so requests reach a leader that may have been deposed), the
others to a node that currently believes it leads (with ``follower_reads``, their reads go to any
node). A strong read is ``read_barrier`` (``follower_read`` on a follower) then a local store
read, exactly what the service does; a write is a proposal. Errors that mean "certainly not
applied" are recorded as ``fail``, ``UnknownOutcome`` and deadlines as ``unknown``.

``under_fault`` runs such a load through a fault of the leader and checks the history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kvnode.core import errors
from kvnode.core.ops import Condition, Put
from kvnode.raft import commands

from tests.integration.raft_trio import Trio, until
from tests.support.linearizability import Op, Recorder, check

KEYS = ("k0", "k1", "k2")


@dataclass
class Load:
    trio: Trio
    partition: int
    recorder: Recorder = field(default_factory=Recorder)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    follower_reads: bool = False  # reads of free clients go to any node; followers ask
    served_by: dict[int, int] = field(default_factory=dict)  # node -> strong reads served
    inflight: dict[int, float] = field(default_factory=dict)  # client -> invoke time of its op

    def all_invoked_after(self, clients: list[int], mark: float) -> bool:
        return all(self.inflight.get(c, -1.0) > mark for c in clients)

    def ok_ops(self) -> int:
        return sum(1 for o in self.recorder.ops if o.outcome == "ok")

    def count(self, kind: str, outcome: str = "ok") -> int:
        return sum(1 for o in self.recorder.ops if o.kind == kind and o.outcome == outcome)

    async def run(self, clients: int, sticky: dict[int, int], seed: int) -> None:
        await asyncio.gather(*(self._client(c, sticky.get(c), seed) for c in range(clients)))

    def _node(self, sticky: int | None, rnd: random.Random) -> int | None:
        if sticky is not None:
            return sticky if self.trio.gms[sticky] is not None else None
        # A client that follows redirects ends up at the leader of the latest term.
        best: tuple[int, int] | None = None
        for i in self.trio.leaders(self.partition):
            status = self.trio.gm(i).status(self.partition)
            term = -1 if status is None else status.term
            if best is None or term > best[0]:
                best = (term, i)
        return None if best is None else best[1]

    async def _client(self, c: int, sticky: int | None, seed: int) -> None:
        rnd = random.Random(seed * 100 + c)
        seen: dict[str, int] = {}
        n = 0
        while not self.stop.is_set():
            node = self._node(sticky, rnd)
            if node is None:
                await asyncio.sleep(0.02)  # no leader known right now: ask again shortly
                continue
            n += 1
            key, roll = rnd.choice(KEYS), rnd.random()
            if roll < 0.5 and self.follower_reads and sticky is None:
                node = rnd.choice([i for i, g in enumerate(self.trio.gms) if g is not None])
            if roll < 0.5:
                await self._read(c, node, key, seen)
            else:
                cond = Condition(if_version=seen[key]) if roll > 0.8 and key in seen else None
                await self._write(c, node, key, f"c{c}-{n}", cond, seen)

    async def _read(self, c: int, node: int, key: str, seen: dict[str, int]) -> None:
        rec = self.recorder
        op = rec.begin(key=key, kind="read", client=c)
        self.inflight[c] = op.invoke
        gm = self.trio.gm(node)
        try:
            if self.follower_reads and not gm.is_leader(self.partition):
                # What the service does on a follower: serve once the leader confirmed a read
                # index, or forward (here: give up, observing nothing).
                if not await gm.follower_read(self.partition, timeout=3.0):
                    rec.end(op, "fail")
                    return
            else:
                await gm.read_barrier(self.partition, timeout=3.0)
            found = gm.store(self.partition).get(key)
        except errors.KvError:
            rec.end(op, "fail")  # a read that failed observed nothing
            return
        self.served_by[node] = self.served_by.get(node, 0) + 1
        if found is None:
            rec.end(op, value=None, version=None)
        else:
            seen[key] = found.version
            rec.end(op, value=found.value, version=found.version)

    async def _write(
        self, c: int, node: int, key: str, value: str, cond: Condition | None, seen: dict[str, int]
    ) -> None:
        rec = self.recorder
        kind = "write" if cond is None else "cas"
        op: Op = rec.begin(
            key=key,
            kind=kind,
            client=c,
            value=value,
            if_version=None if cond is None else cond.if_version,
        )
        self.inflight[c] = op.invoke
        put = Put(key=key, value=value, cond=cond or Condition())
        cmd = commands.WriteCmd(ops=(put,), now_ms=0)
        try:
            result = await self.trio.gm(node).propose(self.partition, cmd, timeout=2.0)
        except errors.UnknownOutcome:
            rec.end(op, "unknown")
            return
        except errors.KvError:
            rec.end(op, "fail")
            return
        if result.failure is not None:
            rec.end(op, succeeded=False)
            return
        version = result.results[0].version
        seen[key] = version
        rec.end(op, version=version, succeeded=True if kind == "cas" else None)


Heal = Callable[[], Awaitable[None]]


async def under_fault(
    trio: Trio,
    fault: Callable[[int], Awaitable[Heal]],
    seed: int,
    *,
    load: Load | None = None,
    sticky_to: Callable[[int], dict[int, int]] = lambda li: {c: li for c in range(6)},
    leader_change: bool = True,
) -> Load:
    """Run the load, apply ``fault`` to the leader once traffic flows, wait until another node
    leads at a higher term (unless ``leader_change`` is False: a fault the leader keeps its
    majority through) and traffic flows, heal, let it run on; check it all.
    ``sticky_to(leader)`` pins clients to nodes (default: most to the faulted leader, so each
    has a request waiting there when it resumes)."""
    partition = 0 if load is None else load.partition
    load = load or Load(trio, partition)
    li = await trio.leader(partition)
    term0 = trio.term(li, partition)
    sticky = sticky_to(li)
    runner = asyncio.ensure_future(load.run(clients=10, sticky=sticky, seed=seed))
    try:
        await until(lambda: load.ok_ops() >= 40, timeout=20, what="traffic before the fault")
        heal = await fault(li)
        try:
            if leader_change:
                new = await until(
                    lambda: [i for i in trio.leaders(partition) if i != li],
                    timeout=15,
                    what="a new leader",
                )
                assert trio.term(new[0], partition) > term0, "the new leader must be later"
            await _traffic_then_sticky_requests(load, list(sticky))
        finally:
            await heal()
        if leader_change:
            await until(
                lambda: not trio.gm(li).is_leader(partition) or trio.term(li, partition) > term0,
                timeout=15,
                what="the old leader stepping down",
            )
        after = load.ok_ops()
        await until(lambda: load.ok_ops() >= after + 40, timeout=20, what="traffic after healing")
    finally:
        load.stop.set()
        await asyncio.wait_for(runner, 15)
    check_history(trio, load)
    return load


async def _traffic_then_sticky_requests(load: Load, sticky: list[int], ops: int = 40) -> None:
    """Wait for ``ops`` more successful operations, then until every sticky client sent a
    request after them (one the faulted node must not answer with what it held before)."""
    during = load.ok_ops()
    await until(lambda: load.ok_ops() >= during + ops, timeout=20, what="traffic during")
    mark = time.monotonic()
    await until(
        lambda: load.all_invoked_after(sticky, mark),
        timeout=10,
        what="requests of the sticky clients invoked after writes elsewhere",
    )


def check_history(trio: Trio, load: Load) -> None:
    """The recorded history is linearizable (else it is dumped next to the trio's data) and
    holds enough successful reads and writes to mean something."""
    verdict = check(load.recorder.ops, budget=2_000_000)
    if not verdict.ok:
        dump = os.path.join(trio.root, "history.json")
        with open(dump, "w") as f:
            json.dump([dataclasses.asdict(o) for o in load.recorder.ops], f)
        raise AssertionError(f"history in {dump}\n{verdict.detail[-6000:]}")
    assert load.count("read") >= 30, load.recorder.ops[-20:]
    assert load.count("write") >= 10, load.recorder.ops[-20:]
