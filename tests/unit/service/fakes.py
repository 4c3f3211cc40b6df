"""Fakes of what NodeService consumes: ``RaftGroups`` (the service's own protocol) and the
forwarder, scripted per test. The real ones are exercised by the integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kvnode.core import errors
from kvnode.core.model import NodeInfo, PartitionMap, Record
from kvnode.core.ops import Consistency, RequestContext, Write, WriteResult
from kvnode.raft import commands
from kvnode.raft.processor import ApplyResult


def info(node_id: str) -> NodeInfo:
    return NodeInfo(node_id, f"{node_id}.test", 8000, 9000)


def three_nodes(*, partitions: int = 2, epoch: int = 3) -> PartitionMap:
    ids = ["n0", "n1", "n2"]
    return PartitionMap.build(
        epoch=epoch,
        nodes=[info(n) for n in ids],
        replicas=[[ids[(p + i) % 3] for i in range(3)] for p in range(partitions)],
        replication=3,
    )


def addr(node_id: str, partition: int) -> str:
    return info(node_id).raft_addr(partition)


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}

    def get(self, key: str) -> Record | None:
        return self.rows.get(key)

    def scan(self, *, prefix: str, start_after: str | None, limit: int) -> list[tuple[str, Record]]:
        keys = sorted(k for k in self.rows if k.startswith(prefix) and k > (start_after or ""))
        return [(k, self.rows[k]) for k in keys[:limit]]


@dataclass
class FakeGroups:
    """``RaftGroups`` of node ``me``: ``leaders[p]`` is the leader's raft address or None;
    ``propose_errors`` are raised by the next proposals, in order."""

    me: str
    leaders: dict[int, str | None] = field(default_factory=dict)
    opened: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    stores: dict[int, FakeStore] = field(default_factory=dict)
    propose_errors: list[errors.KvError] = field(default_factory=list)
    proposals: list[tuple[int, commands.Command]] = field(default_factory=list)
    barriers: list[int] = field(default_factory=list)
    follower_confirms: list[bool] = field(default_factory=list)  # next follower_read answers
    follower_reads: list[int] = field(default_factory=list)
    transfers: list[tuple[int, str]] = field(default_factory=list)
    ticker: Any = field(
        default_factory=lambda: SimpleNamespace(alive=True, last_loop_monotonic=time.monotonic())
    )

    def hosted(self) -> list[int]:
        return sorted(self.opened)

    def hosts(self, partition: int) -> bool:
        return partition in self.opened

    def is_leader(self, partition: int) -> bool:
        return self.hosts(partition) and self.leaders.get(partition) == addr(self.me, partition)

    def leader_addr(self, partition: int) -> str | None:
        return self.leaders.get(partition) if self.hosts(partition) else None

    def status(self, partition: int) -> Any:
        return None

    def all_status(self) -> list[Any]:
        return []

    def store(self, partition: int) -> FakeStore:
        return self.stores.setdefault(partition, FakeStore())

    def registered(self) -> dict[int, tuple[str, list[str]]]:
        return {}

    def open_replica(self, partition: int, *, self_addr: str, peers: list[str]) -> None:
        self.opened[partition] = (self_addr, peers)

    def transfer_leadership(self, partition: int, target_addr: str) -> None:
        self.transfers.append((partition, target_addr))

    async def propose(self, partition: int, cmd: commands.Command, *, timeout: float) -> Any:
        self.proposals.append((partition, cmd))
        if self.propose_errors:
            raise self.propose_errors.pop(0)
        assert isinstance(cmd, commands.WriteCmd)
        results = tuple(WriteResult(key=op.key, version=7, existed=False) for op in cmd.ops)
        return ApplyResult(index=7, results=results)

    async def read_barrier(self, partition: int, *, timeout: float) -> None:
        self.barriers.append(partition)

    async def follower_read(self, partition: int, *, timeout: float) -> bool:
        self.follower_reads.append(partition)
        return self.follower_confirms.pop(0) if self.follower_confirms else False


Answer = Callable[[NodeInfo], Any]  # returns the result or raises


class FakeForwarder:
    """Answers forwarded calls from ``script`` (one callable per call, in order); records the
    node each call went to."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str]] = []  # (kind, node id)

    def _next(self, kind: str, node: NodeInfo) -> Any:
        self.calls.append((kind, node.node_id))
        assert self.script, f"unexpected {kind} forward to {node.node_id}"
        return self.script.pop(0)(node)

    async def get(
        self,
        node: NodeInfo,
        key: str,
        consistency: Consistency,
        ctx: RequestContext,
        deadline: float,
    ) -> Record:
        return self._next("get", node)

    async def batch(
        self, node: NodeInfo, ops: list[Write], ctx: RequestContext, deadline: float
    ) -> list[WriteResult]:
        return self._next("batch", node)

    async def scan(self, node: NodeInfo, **kw: Any) -> tuple[list[tuple[str, Record]], bool]:
        return self._next("scan", node)

    async def partitions(self, node: NodeInfo, *, timeout: float) -> list[dict[str, Any]]:
        return []


def ok_write(key: str) -> Answer:
    return lambda node: [WriteResult(key=key, version=9, existed=False)]


def fail(exc: errors.KvError) -> Answer:
    def raise_it(node: NodeInfo) -> Any:
        raise exc

    return raise_it
