"""Concurrent clients of a Raft trio doing writes, CAS and strong reads on a few keys, recorded as
a history for the linearizability checker (``tests.support.linearizability``).

A client sends each operation to one node: a *sticky* client always to the node it was given
(the one a test pauses or isolates, so requests reach a leader that may have been deposed), the
others to a node that currently believes it leads. A strong read is ``read_barrier`` then a local
store read, exactly what the service does; a write is a proposal. Errors that mean "certainly not
applied" are recorded as ``fail``, ``UnknownOutcome`` and deadlines as ``unknown``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from kvnode.core import errors
from kvnode.core.ops import Condition, Put
from kvnode.raft import commands

from tests.integration.raft_trio import Trio
from tests.support.linearizability import Op, Recorder

KEYS = ("k0", "k1", "k2")


@dataclass
class Load:
    trio: Trio
    partition: int
    recorder: Recorder = field(default_factory=Recorder)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
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
