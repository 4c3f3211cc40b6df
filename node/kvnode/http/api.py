"""The service interface the HTTP layer needs (declared by its consumer, implemented by
``kvnode.service.NodeService`` and by fakes in tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

from kvnode.core.model import PartitionMap, Record
from kvnode.core.ops import (
    BatchOutcome,
    Consistency,
    KeyPage,
    Limits,
    RequestContext,
    Write,
    WriteResult,
)


class ServiceApi(Protocol):
    """Everything a node's HTTP API asks of the node. Errors are ``kvnode.core.errors`` types."""

    @property
    def node_id(self) -> str: ...

    @property
    def limits(self) -> Limits: ...

    async def get(self, key: str, *, consistency: Consistency, ctx: RequestContext) -> Record:
        """The live record for ``key``; raises NotFound when absent or expired."""
        ...

    async def write(self, op: Write, *, ctx: RequestContext) -> WriteResult:
        """Apply one put/delete (with its condition) once committed on a majority."""
        ...

    async def batch(
        self, ops: Sequence[Write], *, atomic: bool, ctx: RequestContext
    ) -> BatchOutcome:
        """Apply a validated batch; each partition's share is all-or-nothing.

        ``atomic=True`` refuses (InvalidArgument) a batch whose keys span partitions.
        """
        ...

    async def list_keys(
        self,
        *,
        prefix: str,
        cursor: str | None,
        limit: int,
        consistency: Consistency,
        ctx: RequestContext,
    ) -> KeyPage:
        """Live keys starting with ``prefix`` and greater than ``cursor``, in key order."""
        ...

    async def cluster_info(self) -> dict[str, Any]:
        """``{"node_id", "epoch", "map": PartitionMap.to_dict(), "leaders": {p: node_id|None},
        "nodes": {node_id: {...status}}}``."""
        ...

    async def install_map(self, pmap: PartitionMap) -> dict[str, Any]:
        """Adopt a newer partition map (admin). Refuses (StaleEpoch) an epoch older than the
        current one; the same epoch with identical content is accepted (idempotent)."""
        ...

    def partition_status(self) -> list[dict[str, Any]]:
        """Raft status of every local replica: partition, role, leader, term, commit and applied
        index, members, lag."""
        ...

    def drain_report(self) -> dict[str, Any]:
        """Maintenance drain state: ``{"node_id", "drained", "complete", "leader_of",
        "partitions": [{"partition", "leader"}]}``."""
        ...

    async def set_drained(self, drained: bool, *, timeout: float) -> dict[str, Any]:
        """Drain (hand away every leadership, keep them away, persisted) or undrain this node;
        waits up to ``timeout`` for the leaderships to move; answers ``drain_report()``."""
        ...

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: (alive, body). Not alive when the Raft ticker thread is dead or has not
        ticked for longer than ``ticker_stall_s``; the body is then an error (``code``,
        ``message``, ``reason``)."""
        ...

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every local replica knows a leader (and the node has a map)."""
        ...


@runtime_checkable
class PartitionScanApi(Protocol):
    """Optional extension of ``ServiceApi`` (added later, kept separate so existing
    implementations stay valid): one partition's share of a listing, served on
    ``GET /v1/internal/scan`` for nodes that merge a cross-partition ``GET /v1/kv``."""

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
        """Live records of partition ``p`` in key order, and whether more may follow."""
        ...


class AdminApi(Protocol):
    """Partition admin operations for rebalancing (``kvnode.service.admin.PartitionAdmin``),
    served under ``/v1/admin/partitions/{p}``. Node ids name nodes; see that module."""

    def replica_state(self, partition: int) -> dict[str, Any]: ...

    async def seed_stream(self, partition: int) -> tuple[dict[str, Any], AsyncIterator[bytes]]: ...

    async def join(self, partition: int, *, source: str) -> dict[str, Any]: ...

    async def backup_stream(
        self, partition: int, *, timeout: float
    ) -> tuple[dict[str, Any], AsyncIterator[bytes]]: ...

    async def restore(
        self, partition: int, *, peers: list[str], body: AsyncIterator[bytes]
    ) -> dict[str, Any]: ...

    async def change_member(
        self, partition: int, *, add: str | None, remove: str | None, timeout: float
    ) -> dict[str, Any]: ...

    async def transfer_leader(
        self, partition: int, *, to: str, timeout: float
    ) -> dict[str, Any]: ...

    async def start_digest(self, partition: int, *, timeout: float) -> dict[str, Any]: ...

    def digest(self, partition: int, index: int) -> dict[str, Any]: ...

    async def drop(self, partition: int) -> dict[str, Any]: ...
