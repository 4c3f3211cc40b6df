"""What the rebalance executor needs from storage nodes, declared by its consumer.

Every call is idempotent (a retry after a lost answer is harmless) and raises
``kvnode.core.errors`` types: ``retriable`` ones (Unavailable, NotLeader, Overloaded,
UnknownOutcome) may be retried; the rest mean the step cannot succeed as asked.
``kvnode.rebalance.http_admin.HttpNodeAdmin`` implements it over HTTP; unit tests use fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kvnode.core.model import NodeInfo, PartitionMap


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One node's view of its replica of a partition (``hosted=False``: it has none)."""

    partition: int
    hosted: bool
    role: str = "none"  # leader | follower | candidate | none
    leader_id: str | None = None  # node id of the leader this replica follows (or is)
    term: int = 0
    commit_index: int = 0
    last_applied: int = 0
    members: tuple[str, ...] = ()  # node ids of the Raft voters as this replica sees them
    keys: int = 0
    size_bytes: int = 0
    needs_reseed: bool = False  # not hosted because this node's volume lost it (identity)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReplicaState:
        return cls(
            partition=int(d["partition"]),
            hosted=bool(d["hosted"]),
            role=str(d.get("role", "none")),
            leader_id=None if d.get("leader_id") is None else str(d["leader_id"]),
            term=int(d.get("term", 0)),
            commit_index=int(d.get("commit_index", 0)),
            last_applied=int(d.get("last_applied", 0)),
            members=tuple(str(m) for m in d.get("members", ())),
            keys=int(d.get("keys", 0)),
            size_bytes=int(d.get("size_bytes", 0)),
            needs_reseed=bool(d.get("needs_reseed", False)),
        )


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What a ``join`` did: ``already_hosted`` means the replica existed and nothing moved."""

    partition: int
    already_hosted: bool
    bytes: int = 0
    items: int = 0
    applied_index: int = 0
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedResult:
        return cls(
            partition=int(d["partition"]),
            already_hosted=bool(d["already_hosted"]),
            bytes=int(d.get("bytes", 0)),
            items=int(d.get("items", 0)),
            applied_index=int(d.get("applied_index", 0)),
            seconds=float(d.get("seconds", 0.0)),
        )


class NodeAdmin(Protocol):
    """Admin operations on one node (``node``) for one partition."""

    async def install_map(self, node: NodeInfo, pmap: PartitionMap) -> None:
        """Install ``pmap`` (same epoch and content again is a no-op). StaleEpoch if older."""
        ...

    async def replica_state(self, node: NodeInfo, partition: int) -> ReplicaState:
        """The node's replica of ``partition`` (``hosted=False`` when it has none)."""
        ...

    async def join(self, node: NodeInfo, partition: int, *, source: str) -> SeedResult:
        """Make ``node`` host a joining replica of ``partition``: it streams a consistent
        snapshot from node ``source`` (a current member, normally the leader), verifies and
        loads it, and opens the replica (not yet a voter). Already hosted: no-op."""
        ...

    async def add_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        """On the leader: add node ``member`` as a voter and wait until the change commits.
        Already a member: no-op. Not the leader: NotLeader (with ``leader`` hint)."""
        ...

    async def remove_member(self, leader: NodeInfo, partition: int, member: str) -> None:
        """On the leader: remove voter ``member`` (never the leader itself: InvalidArgument) and
        wait until the change commits. Not a member: no-op."""
        ...

    async def transfer_leader(self, leader: NodeInfo, partition: int, to: str) -> None:
        """On the leader: hand leadership to member ``to`` and wait until ``to`` leads.
        ``to`` already leads: no-op."""
        ...

    async def start_digest(self, leader: NodeInfo, partition: int) -> int:
        """On the leader: replicate a digest marker; every replica digests its data as of that
        log index (in the background). Returns the index."""
        ...

    async def digest(self, node: NodeInfo, partition: int, index: int) -> str | None:
        """The node's digest of ``partition`` at log ``index``; None while not computed yet.
        NotFound if the replica is past ``index`` without a digest for it (start a new one)."""
        ...

    async def drop(self, node: NodeInfo, partition: int) -> bool:
        """Close the node's replica of ``partition`` and delete its data. Refused
        (PreconditionFailed) while the node's installed map still lists it as a replica.
        Returns False when there was nothing to drop."""
        ...
