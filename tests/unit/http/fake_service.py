"""A ServiceApi over a dict, to test the HTTP layer alone.

It follows the protocol's contract closely enough for the handlers (versions, conditions, TTL,
listing with a cursor, per-partition all-or-nothing batches) and records every call so tests can
assert that refused input never reached the service. ``fail_with`` makes the next data call raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kvnode.core import errors
from kvnode.core.hashing import partition_of
from kvnode.core.model import NodeInfo, PartitionMap, Record
from kvnode.core.ops import (
    BatchOutcome,
    Consistency,
    KeyPage,
    Limits,
    OpOutcome,
    Put,
    RequestContext,
    Write,
    WriteResult,
)

PARTITIONS = 4


def sample_map(epoch: int = 1) -> PartitionMap:
    nodes = [NodeInfo(f"n{i}", "127.0.0.1", 7000 + i, 8000 + 100 * i) for i in range(3)]
    replicas = [[f"n{(p + i) % 3}" for i in range(3)] for p in range(PARTITIONS)]
    return PartitionMap.build(epoch=epoch, nodes=nodes, replicas=replicas, replication=3)


@dataclass
class FakeService:
    node_id: str = "n0"
    limits: Limits = field(default_factory=Limits)
    now_ms: int = 1_000_000
    data: dict[str, Record] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: errors.KvError | Exception | None = None
    failing_partitions: dict[int, errors.KvError] = field(default_factory=dict)
    ready: bool = True
    alive: bool = True
    drained: bool = False
    pmap: PartitionMap = field(default_factory=sample_map)
    _version: int = 0

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc

    def _live(self, key: str) -> Record | None:
        rec = self.data.get(key)
        return None if rec is None or rec.expired(self.now_ms) else rec

    async def get(self, key: str, *, consistency: Consistency, ctx: RequestContext) -> Record:
        self.calls.append(("get", (key, consistency, ctx)))
        self._maybe_fail()
        rec = self._live(key)
        if rec is None:
            raise errors.NotFound(f"key {key!r} not found", key=key)
        return rec

    def _check(self, op: Write) -> None:
        rec = self._live(op.key)
        current = rec.version if rec else 0
        cond = op.cond
        if (cond.if_version is not None and cond.if_version != current) or (
            cond.if_value is not None and (rec is None or rec.value != cond.if_value)
        ):
            raise errors.PreconditionFailed(
                f"condition failed for {op.key!r}", key=op.key, current_version=current
            )

    def _apply(self, op: Write) -> WriteResult:
        rec = self._live(op.key)
        self._version += 1
        if isinstance(op, Put):
            expires = None if op.ttl_ms is None else self.now_ms + op.ttl_ms
            self.data[op.key] = Record(op.value, self._version, expires)
            return WriteResult(op.key, self._version, rec is not None)
        self.data.pop(op.key, None)
        return WriteResult(op.key, rec.version if rec else 0, rec is not None)

    async def write(self, op: Write, *, ctx: RequestContext) -> WriteResult:
        self.calls.append(("write", (op, ctx)))
        self._maybe_fail()
        self._check(op)
        return self._apply(op)

    async def batch(
        self, ops: Sequence[Write], *, atomic: bool, ctx: RequestContext
    ) -> BatchOutcome:
        self.calls.append(("batch", (list(ops), atomic, ctx)))
        self._maybe_fail()
        by_part: dict[int, list[int]] = {}
        for i, op in enumerate(ops):
            by_part.setdefault(partition_of(op.key, PARTITIONS), []).append(i)
        if atomic and len(by_part) > 1:
            raise errors.InvalidArgument("atomic batch spans partitions", field="ops")
        outcomes: list[OpOutcome | None] = [None] * len(ops)
        for part, idxs in by_part.items():
            err = self.failing_partitions.get(part)
            if err is None:
                try:
                    for i in idxs:
                        self._check(ops[i])
                except errors.PreconditionFailed as exc:
                    # like the state machine: ``index`` is the op's position in the share
                    failed = next(j for j, i in enumerate(idxs) if ops[i].key == exc.details["key"])
                    err = errors.PreconditionFailed(exc.message, **exc.details, index=failed)
            for i in idxs:
                outcomes[i] = OpOutcome(error=err) if err else OpOutcome(result=self._apply(ops[i]))
        return BatchOutcome(tuple(o for o in outcomes if o is not None))

    async def list_keys(
        self,
        *,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
    ) -> KeyPage:
        self.calls.append(("list", (prefix, cursor, limit, consistency, ctx)))
        self._maybe_fail()
        keys = sorted(
            k
            for k in self.data
            if k.startswith(prefix) and (cursor is None or k > cursor) and self._live(k)
        )
        page = keys[:limit]
        nxt = page[-1] if len(keys) > limit else None
        return KeyPage(tuple((k, self.data[k]) for k in page), nxt)

    async def scan_partition(
        self,
        p: int,
        *,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
    ) -> tuple[list[tuple[str, Record]], bool]:
        self.calls.append(("scan", (p, prefix, cursor, limit, consistency, ctx)))
        self._maybe_fail()
        if not 0 <= p < PARTITIONS:
            raise errors.InvalidArgument(f"partition must be in [0, {PARTITIONS})")
        keys = sorted(
            k
            for k, r in self.data.items()
            if partition_of(k, PARTITIONS) == p
            and k.startswith(prefix)
            and (cursor is None or k > cursor)
            and not r.expired(self.now_ms)
        )
        return [(k, self.data[k]) for k in keys[:limit]], len(keys) > limit

    async def cluster_info(self) -> dict[str, Any]:
        self.calls.append(("cluster", None))
        self._maybe_fail()
        leaders = {str(p): self.pmap.replicas[p][0] for p in range(self.pmap.partitions)}
        return {
            "node_id": self.node_id,
            "epoch": self.pmap.epoch,
            "map": self.pmap.to_dict(),
            "leaders": leaders,
            "nodes": {n.node_id: {"ok": True} for n in self.pmap.nodes},
        }

    async def install_map(self, pmap: PartitionMap) -> dict[str, Any]:
        self.calls.append(("install_map", pmap))
        self._maybe_fail()
        if pmap.epoch < self.pmap.epoch:
            raise errors.StaleEpoch("older epoch", map=self.pmap.to_dict())
        self.pmap = pmap
        return {"epoch": pmap.epoch, "installed": True}

    def partition_status(self) -> list[dict[str, Any]]:
        return [{"partition": p, "role": "leader", "term": 1} for p in range(PARTITIONS)]

    def drain_report(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "drained": self.drained, "complete": self.drained}

    async def set_drained(self, drained: bool, *, timeout: float) -> dict[str, Any]:
        self.calls.append(("set_drained", (drained, timeout)))
        self.drained = drained
        return self.drain_report()

    def health(self) -> tuple[bool, dict[str, Any]]:
        if self.alive:
            return True, {"status": "ok", "node_id": self.node_id, "ticker_lag_s": 0.01}
        body = {"code": "unavailable", "message": "the Raft ticker thread is not running"}
        return False, {**body, "reason": "ticker_dead", "node_id": self.node_id}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"partitions_without_leader": [] if self.ready else [2]}
