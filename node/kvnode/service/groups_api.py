"""What the data path of a node needs from its Raft groups, declared by the consumer.

``NodeService``, ``ClusterView`` and ``Housekeeper`` are typed against ``RaftGroups`` instead of
the concrete ``GroupManager``, so their routing, consistency and wait-for-leader decisions are
unit-tested against a small fake (tests/unit/service) while the integration tests run the real
groups. ``GroupManager`` satisfies it structurally; mypy checks that where the node is wired up.
The admin side (seeding, membership changes) keeps using ``GroupManager`` directly.
"""

from __future__ import annotations

from typing import Any, Protocol

from kvnode.raft import commands
from kvnode.raft.groups import ReplicaStatus
from kvnode.storage.engine import PartitionStore


class TickerHealth(Protocol):
    """The shared Raft ticker thread, as far as health checks look at it."""

    @property
    def alive(self) -> bool: ...

    last_loop_monotonic: float


class RaftGroups(Protocol):
    """The node's local replicas: who leads, proposals, reads, and opening replicas."""

    @property
    def ticker(self) -> TickerHealth: ...

    def hosted(self) -> list[int]: ...

    def hosts(self, partition: int) -> bool: ...

    def is_leader(self, partition: int) -> bool: ...

    def leader_addr(self, partition: int) -> str | None: ...

    def status(self, partition: int) -> ReplicaStatus | None: ...

    def all_status(self) -> list[ReplicaStatus]: ...

    def store(self, partition: int) -> PartitionStore: ...

    def registered(self) -> dict[int, tuple[str, list[str]]]: ...

    def open_replica(self, partition: int, *, self_addr: str, peers: list[str]) -> None: ...

    def transfer_leadership(self, partition: int, target_addr: str) -> None: ...

    async def propose(self, partition: int, cmd: commands.Command, *, timeout: float) -> Any: ...

    async def read_barrier(self, partition: int, *, timeout: float) -> None: ...

    async def follower_read(self, partition: int, *, timeout: float) -> bool: ...
